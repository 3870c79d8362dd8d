-- SHA-1 (FIPS 180-4) in plain Lua 5.4, so the spec client can check Sec-WebSocket-Accept
-- without trusting the server's own OpenSSL call. Test code only: short inputs, no speed needed.
local M = {}

local function rol(x, n) return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF end

function M.binary(msg)
    local h0, h1, h2, h3, h4 = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
    local bits = #msg * 8
    msg = msg .. "\128" .. string.rep("\0", (55 - #msg) % 64) .. string.pack(">I8", bits)
    assert(#msg % 64 == 0)
    local w = {}
    for chunk = 1, #msg, 64 do
        for i = 0, 15 do w[i] = string.unpack(">I4", msg, chunk + i * 4) end
        for i = 16, 79 do w[i] = rol(w[i - 3] ~ w[i - 8] ~ w[i - 14] ~ w[i - 16], 1) end
        local a, b, c, d, e = h0, h1, h2, h3, h4
        for i = 0, 79 do
            local f, k
            if i < 20 then
                f, k = (b & c) | ((~b) & d), 0x5A827999
            elseif i < 40 then
                f, k = b ~ c ~ d, 0x6ED9EBA1
            elseif i < 60 then
                f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
            else
                f, k = b ~ c ~ d, 0xCA62C1D6
            end
            local t = (rol(a, 5) + (f & 0xFFFFFFFF) + e + k + w[i]) & 0xFFFFFFFF
            e, d, c, b, a = d, c, rol(b, 30), a, t
        end
        h0 = (h0 + a) & 0xFFFFFFFF
        h1 = (h1 + b) & 0xFFFFFFFF
        h2 = (h2 + c) & 0xFFFFFFFF
        h3 = (h3 + d) & 0xFFFFFFFF
        h4 = (h4 + e) & 0xFFFFFFFF
    end
    return string.pack(">I4I4I4I4I4", h0, h1, h2, h3, h4)
end

return M
