-- Input rules of the chat example: user names, room names and message text.
-- Pure functions (no mw, no state), so spec/validate_spec.lua checks them without a server.
-- Each returns the cleaned value, or nil and a reason the client can show as it is.
local M = {}

local type, utf8_codes, utf8_len = type, utf8.codes, utf8.len
local find, gsub, reverse, sub = string.find, string.gsub, string.reverse, string.sub

M.MAX_NAME = 24     -- characters (code points), after trimming
M.MAX_ROOM = 32     -- bytes; room names are ASCII
M.MAX_TEXT = 2000   -- characters (code points), after trimming

-- Code points that let one user's text disturb how everything around it is drawn: the bidi
-- embeddings, overrides and isolates reorder the rest of a line (or of a members list), and the
-- line and paragraph separators break lines where the page does not expect it.
local function is_layout_control(c)
    return (c >= 0x202A and c <= 0x202E) or (c >= 0x2066 and c <= 0x2069)
        or c == 0x2028 or c == 0x2029
end

-- C0 controls, DEL and the C1 controls. A name has no use for any of them; a message may keep
-- its line breaks and tabs (allow_newlines).
local function is_control(c, allow_newlines)
    if c == 0x0A or c == 0x09 then return not allow_newlines end
    return c < 0x20 or (c >= 0x7F and c <= 0x9F)
end

-- Strips ASCII white space at both ends. Written with two plain searches, not with a pattern
-- like "^%s*(.-)%s*$", because such a pattern backtracks over every inner run of spaces and a
-- hostile client could make one message cost quadratic time.
function M.trim(s)
    local first = find(s, "%S")
    if not first then return "" end
    local last = #s - find(reverse(s), "%S") + 1
    return sub(s, first, last)
end

-- Checks a string of code points: valid UTF-8, 1..max characters, no controls. The byte length
-- is checked first (a code point is at most 4 bytes) so oversized input costs nothing more.
local function check_text(s, what, max, allow_newlines)
    if type(s) ~= "string" then return nil, what .. " must be a string" end
    if #s > 4 * max then return nil, what .. " is too long (at most " .. max .. " characters)" end
    s = M.trim(s)
    if s == "" then return nil, what .. " is empty" end
    local n = utf8_len(s)
    if not n then return nil, what .. " is not valid UTF-8" end
    if n > max then return nil, what .. " is too long (at most " .. max .. " characters)" end
    for _, c in utf8_codes(s) do
        if is_control(c, allow_newlines) or is_layout_control(c) then
            return nil, what .. " contains control characters"
        end
    end
    return s
end

-- A display name: trimmed, 1..24 characters, no control characters. Names need not be unique
-- (ids tell people apart), so a reconnecting client never finds its own name still taken.
function M.name(s)
    return check_text(s, "name", M.MAX_NAME, false)
end

-- A room name: 1..32 characters of A-Z a-z 0-9 _ -. Not trimmed: a room name is an identifier
-- the client already holds, and a stray space is a client bug worth reporting. The class is
-- spelled out because %w follows the C locale and could admit more than ASCII.
function M.room(s)
    if type(s) ~= "string" then return nil, "room must be a string" end
    if #s == 0 or #s > M.MAX_ROOM or find(s, "[^A-Za-z0-9_%-]") then
        return nil, "room names are 1 to " .. M.MAX_ROOM .. " characters of A-Z a-z 0-9 _ -"
    end
    return s
end

-- A chat message: trimmed, 1..2000 characters; line breaks and tabs are kept, and CR LF line
-- ends become LF (a lone CR, which redraws a terminal line, is still refused).
function M.text(s)
    if type(s) == "string" then s = gsub(s, "\r\n", "\n") end
    return check_text(s, "text", M.MAX_TEXT, true)
end

return M
