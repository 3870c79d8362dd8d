-- mw.crypto, mw.base64, mw.hex and mw.jwt in a real server: known-answer vectors (FIPS 180,
-- RFC 4231, RFC 2202, RFC 4648), and JSON Web Tokens made by another implementation (python3-jwt,
-- keys from `openssl genpkey`) verified by the app, each failure reason, algorithm confusion
-- attempts, mw.jwt.sign's tokens verified by python3-jwt, and app.upgrade refusing with 401.
local ws = require "ws_client"
local server = require "server"
local helpers = require "helpers"
local shell_quote, write_file, read_file = helpers.shell_quote, helpers.write_file,
    helpers.read_file

-- The app runs each message as a chunk of Lua in one lasting environment and sends back what it
-- returns (or "error: ..."), so each case below is one line of the API as an app writes it.
local APP = [=[
local app = {}
local SECRET = "upgrade-secret-0123456789abcdef"
local env = { mw = mw, pcall = pcall, tostring = tostring, type = type, string = string,
              table = table, math = math, os = os, select = select, ipairs = ipairs, pairs = pairs }
env.K = {}

function app.upgrade(req)
    if req.path ~= "/auth" then return true end
    local claims, why = mw.jwt.verify(("&" .. req.query):match("&token=([^&]*)"),
        { keys = SECRET, algorithms = { "HS256" }, audience = "chat" })
    if not claims then return false, 401, why end
    return true, { data = { user = claims.sub } }
end

function app.message(conn, data)
    if data == "whoami" then return conn:send("user " .. tostring(conn.data.user)) end
    local fn, err = load(data, "=case", "t", env)
    if not fn then return conn:send("load error: " .. err) end
    local ok, res = pcall(fn)
    conn:send(ok and tostring(res) or ("error: " .. tostring(res)))
end

return app
]=]

-- Signs and forges tokens the way another implementation would (python3-jwt 2.x).
local PY = [=[
import base64, hashlib, hmac, json, sys
import jwt

def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

mode = sys.argv[1]
if mode == "sign":      # sign ALG KEYFILE CLAIMS HEADERS
    key = open(sys.argv[3], "rb").read()
    headers = json.loads(sys.argv[5]) or None
    print(jwt.encode(json.loads(sys.argv[4]), key, algorithm=sys.argv[2], headers=headers))
elif mode == "forge":   # forge HEADER CLAIMS KEYFILE|- HASH: HMAC with any key (a PEM too)
    signing = b64(sys.argv[2].encode()) + "." + b64(sys.argv[3].encode())
    sig = b""
    if sys.argv[4] != "-":
        sig = hmac.new(open(sys.argv[4], "rb").read(), signing.encode(), sys.argv[5]).digest()
    print(signing + "." + b64(sig))
elif mode == "verify":  # verify ALG KEYFILE TOKEN
    key = open(sys.argv[3], "rb").read()
    claims = jwt.decode(sys.argv[4], key, algorithms=[sys.argv[2]],
                        options={"verify_aud": False})
    print(json.dumps(claims, sort_keys=True))
]=]

local PYTHON = "/usr/bin/python3"

local function sh(cmd)
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("a")
    local ok = p:close()
    assert(ok, cmd .. " failed:\n" .. out)
    return (out:gsub("%s+$", ""))
end

local function q(s) return string.format("%q", s) end

describe("mw.crypto, mw.base64, mw.hex, mw.jwt", function()
    local srv, dir, c, py
    local keyfile = {}

    local function run(code)
        c:send_text(code)
        local msg = assert(c:recv_message(10))
        return msg
    end

    -- A token from python3-jwt.
    local function py_sign(alg, key, claims, headers)
        return sh(PYTHON .. " " .. py .. " sign " .. alg .. " " .. shell_quote(keyfile[key]) .. " "
            .. shell_quote(claims) .. " " .. shell_quote(headers or "null"))
    end

    local function py_forge(header, claims, key, hash)
        return sh(PYTHON .. " " .. py .. " forge " .. shell_quote(header) .. " "
            .. shell_quote(claims) .. " " .. (key and shell_quote(keyfile[key]) or "-") .. " "
            .. (hash or "sha256"))
    end

    -- What mw.jwt.verify(token, opts) gives: "ok <claims as JSON>" or "nil <reason>".
    local function verify(token, opts)
        return run("local c, r = mw.jwt.verify(" .. (token and q(token) or "nil") .. ", "
            .. opts .. ") return c and ('ok ' .. c.sub) or ('nil ' .. tostring(r))")
    end

    setup(function()
        dir = server.tmpdir()
        py = dir .. "/jwt_tool.py"
        write_file(py, PY)
        local function genkey(name, args)
            keyfile[name] = dir .. "/" .. name .. ".pem"
            keyfile[name .. "_pub"] = dir .. "/" .. name .. ".pub"
            sh("openssl genpkey " .. args .. " -out " .. keyfile[name])
            sh("openssl pkey -in " .. keyfile[name] .. " -pubout -out " .. keyfile[name .. "_pub"])
        end
        genkey("rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048")
        genkey("rsa2", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048")
        genkey("rsa_short", "-algorithm RSA -pkeyopt rsa_keygen_bits:1024")
        genkey("ec", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256")
        genkey("ec384", "-algorithm EC -pkeyopt ec_paramgen_curve:P-384")
        genkey("ed", "-algorithm ed25519")
        keyfile.ed_encrypted = dir .. "/ed_encrypted.pem"
        sh("openssl genpkey -algorithm ed25519 -aes256 -pass pass:hunter2 -out "
            .. keyfile.ed_encrypted)
        keyfile.secret = dir .. "/secret"
        write_file(keyfile.secret, "a-shared-secret-of-32-bytes-long")
        srv = server.start { app = server.app_dir { ["app.lua"] = APP } }
        c = assert(ws.connect(srv.port))
        -- The app keeps the keys as K.<name>: PEM texts and the secret.
        for name, path in pairs(keyfile) do
            assert.equal("set", run("K." .. name .. " = " .. q(read_file(path)) .. " return 'set'"))
        end
    end)

    teardown(function()
        if c then c:close() end
        if srv then srv:stop() end
        if dir then os.execute("rm -rf " .. shell_quote(dir)) end
    end)

    describe("digests and HMAC", function()
        local cases = {
            { "sha1 abc (FIPS 180)", "mw.crypto.sha1('abc')",
              "a9993e364706816aba3e25717850c26c9cd0d89d" },
            { "sha256 abc", "mw.crypto.sha256('abc')",
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
            { "sha384 abc", "mw.crypto.sha384('abc')",
              "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
              .. "8086072ba1e7cc2358baeca134c825a7" },
            { "sha512 abc", "mw.crypto.sha512('abc')",
              "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
              .. "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f" },
            { "sha256 of the empty string", "mw.crypto.sha256('')",
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
            { "hmac sha256, RFC 4231 case 2",
              "mw.crypto.hmac('sha256', 'Jefe', 'what do ya want for nothing?')",
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
            { "hmac sha384, RFC 4231 case 2",
              "mw.crypto.hmac('sha384', 'Jefe', 'what do ya want for nothing?')",
              "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
              .. "8e2240ca5e69e2c78b3239ecfab21649" },
            { "hmac sha512, RFC 4231 case 2",
              "mw.crypto.hmac('sha512', 'Jefe', 'what do ya want for nothing?')",
              "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
              .. "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737" },
            { "hmac sha1, RFC 2202 case 2",
              "mw.crypto.hmac('sha1', 'Jefe', 'what do ya want for nothing?')",
              "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79" },
            { "hmac sha256, RFC 4231 case 1 (binary key)",
              "mw.crypto.hmac('sha256', string.rep('\\x0b', 20), 'Hi There')",
              "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
        }
        for _, case in ipairs(cases) do
            it(case[1], function()
                assert.equal(case[3], run("return mw.hex.encode(" .. case[2] .. ")"))
            end)
        end

        it("hmac with an unknown algorithm raises", function()
            assert.matches("unknown algorithm 'md5'",
                run("return mw.crypto.hmac('md5', 'k', 's')"))
        end)
    end)

    describe("random and equal", function()
        it("random(n) gives n bytes, different each time", function()
            assert.equal("32 32 0 true", run("local a, b = mw.crypto.random(32), "
                .. "mw.crypto.random(32) return #a .. ' ' .. #b .. ' ' .. "
                .. "#mw.crypto.random(0) .. ' ' .. tostring(a ~= b)"))
            assert.equal("1048576", run("return #mw.crypto.random(1048576)"))
        end)

        it("random refuses a negative size or more than 1 MiB", function()
            assert.matches("^error: .*0 to 1048576", run("return mw.crypto.random(-1)"))
            assert.matches("^error: .*0 to 1048576", run("return mw.crypto.random(1048577)"))
        end)

        it("equal compares whole strings", function()
            assert.equal("true false false false", run("return tostring(mw.crypto.equal('abc', "
                .. "'abc')) .. ' ' .. tostring(mw.crypto.equal('abc', 'abd')) .. ' ' .. "
                .. "tostring(mw.crypto.equal('abc', 'ab')) .. ' ' .. "
                .. "tostring(mw.crypto.equal('', 'a'))"))
            assert.matches("^error:", run("return mw.crypto.equal('a', nil)"))
        end)
    end)

    describe("base64 and hex", function()
        -- RFC 4648 section 10.
        local vectors = { { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
                          { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
                          { "foobar", "Zm9vYmFy" } }
        for _, v in ipairs(vectors) do
            it("RFC 4648: " .. q(v[1]) .. " <-> " .. v[2], function()
                assert.equal(v[2], run("return mw.base64.encode(" .. q(v[1]) .. ")"))
                assert.equal(v[1], run("return mw.base64.decode(" .. q(v[2]) .. ")"))
                local url = v[2]:gsub("=", "")
                assert.equal(url, run("return mw.base64.encode(" .. q(v[1]) .. ", true)"))
                assert.equal(v[1], run("return mw.base64.decode(" .. q(url) .. ", true)"))
            end)
        end

        it("the url-safe alphabet uses - and _, and no padding", function()
            assert.equal("+/8= -_8", run("local s = '\\xfb\\xff' return mw.base64.encode(s) "
                .. ".. ' ' .. mw.base64.encode(s, true)"))
            assert.equal("true true", run("return tostring(mw.base64.decode('-_8', true) == "
                .. "'\\xfb\\xff') .. ' ' .. "
                .. "tostring(mw.base64.decode('-_8=', true) == '\\xfb\\xff')"))
        end)

        it("round-trips every byte", function()
            assert.equal("true true", run("local t = {} for i = 0, 255 do t[#t + 1] = "
                .. "string.char(i) end local s = table.concat(t) return "
                .. "tostring(mw.base64.decode(mw.base64.encode(s)) == s) .. ' ' .. "
                .. "tostring(mw.base64.decode(mw.base64.encode(s, true), true) == s)"))
        end)

        local invalid = { { "bad padding", "Zg=" }, { "one character too many", "Zm9vY" },
                          { "missing padding (standard)", "Zg" }, { "non-zero spare bits", "Zh==" },
                          { "whitespace", "Zm9v YmFy" }, { "url character in standard", "-_8=" },
                          { "padding in the middle", "Zg==Zg==" } }
        for _, v in ipairs(invalid) do
            it("decode refuses " .. v[1], function()
                assert.equal("nil invalid base64", run("local s, e = mw.base64.decode("
                    .. q(v[2]) .. ") return tostring(s) .. ' ' .. e"))
            end)
        end
        it("url decode refuses standard characters", function()
            assert.equal("nil invalid base64", run("local s, e = mw.base64.decode('+/8', true) "
                .. "return tostring(s) .. ' ' .. e"))
        end)

        it("hex encodes lower case and decodes either case", function()
            assert.equal("0001feff", run("return mw.hex.encode('\\0\\1\\254\\255')"))
            assert.equal("true", run("return tostring(mw.hex.decode('0001FEff') == "
                .. "'\\0\\1\\254\\255')"))
            assert.equal("nil invalid hex | nil invalid hex | ", run("local a, e = "
                .. "mw.hex.decode('abc') local b, f = mw.hex.decode('zz') return tostring(a) "
                .. ".. ' ' .. e .. ' | ' .. tostring(b) .. ' ' .. f .. ' | ' .. mw.hex.decode('')"))
        end)
    end)

    describe("mw.jwt.verify with tokens from python3-jwt", function()
        local now = os.time()
        local claims = string.format('{"sub": "ada", "iat": %d, "exp": %d}', now, now + 600)
        local cases = {
            { "HS256", "secret", "secret" }, { "HS384", "secret", "secret" },
            { "HS512", "secret", "secret" }, { "RS256", "rsa", "rsa_pub" },
            { "RS384", "rsa", "rsa_pub" }, { "RS512", "rsa", "rsa_pub" },
            { "ES256", "ec", "ec_pub" }, { "ES384", "ec384", "ec384_pub" },
            { "EdDSA", "ed", "ed_pub" },
        }
        for _, case in ipairs(cases) do
            it(case[1] .. " verifies", function()
                local token = py_sign(case[1], case[2], claims)
                assert.equal("ok ada", verify(token, "{ keys = K." .. case[3]
                    .. ", algorithms = { '" .. case[1] .. "' } }"))
                -- and the claims come back with their types
                assert.equal("ada integer true", run("local c = mw.jwt.verify(" .. q(token)
                    .. ", { keys = K." .. case[3] .. ", algorithms = { '" .. case[1] .. "' } }) "
                    .. "return c.sub .. ' ' .. math.type(c.exp) .. ' ' .. tostring(c.exp > "
                    .. "c.iat)"))
            end)
        end

        it("picks the key by kid from a table of keys", function()
            local keys = "{ keys = { a = K.secret, b = K.rsa_pub }, "
                .. "algorithms = { 'HS256', 'RS256' } }"
            assert.equal("ok ada", verify(py_sign("RS256", "rsa", claims, '{"kid": "b"}'), keys))
            assert.equal("ok ada", verify(py_sign("HS256", "secret", claims, '{"kid": "a"}'), keys))
            assert.equal("nil unknown_kid", verify(py_sign("HS256", "secret", claims,
                '{"kid": "c"}'), keys))
            assert.equal("nil unknown_kid", verify(py_sign("HS256", "secret", claims), keys))
            -- kid "a" holds the secret: an RS256 token that names it is refused by key type
            assert.equal("nil bad_key", verify(py_sign("RS256", "rsa", claims, '{"kid": "a"}'),
                keys))
        end)
    end)

    describe("each failure reason", function()
        local now = os.time()
        local HS = "{ keys = K.secret, algorithms = { 'HS256' } }"
        local function hs(claims) return py_sign("HS256", "secret", claims) end

        it("missing: no token at all (req.query:match found none)", function()
            assert.equal("nil missing", verify(nil, HS))
        end)

        it("expired, and the leeway", function()
            local token = hs(string.format('{"sub": "ada", "exp": %d}', now - 10))
            assert.equal("nil expired", verify(token, HS))
            assert.equal("ok ada", verify(token,
                "{ keys = K.secret, algorithms = { 'HS256' }, leeway = 30 }"))
            assert.equal("nil expired", verify(hs(string.format('{"sub": "ada", "exp": %d}',
                now - 100)), "{ keys = K.secret, algorithms = { 'HS256' }, leeway = 30 }"))
        end)

        it("not_yet_valid, and the leeway", function()
            local token = hs(string.format('{"sub": "ada", "nbf": %d}', now + 20))
            assert.equal("nil not_yet_valid", verify(token, HS))
            assert.equal("ok ada", verify(token,
                "{ keys = K.secret, algorithms = { 'HS256' }, leeway = 30 }"))
        end)

        it("bad_issuer", function()
            local opts = "{ keys = K.secret, algorithms = { 'HS256' }, "
                .. "issuer = 'https://id.example' }"
            assert.equal("ok ada", verify(hs('{"sub": "ada", "iss": "https://id.example"}'), opts))
            assert.equal("nil bad_issuer",
                verify(hs('{"sub": "ada", "iss": "https://evil"}'), opts))
            assert.equal("nil bad_issuer", verify(hs('{"sub": "ada"}'), opts))
        end)

        it("bad_audience: aud as a string or an array", function()
            local opts = "{ keys = K.secret, algorithms = { 'HS256' }, audience = 'chat' }"
            assert.equal("ok ada", verify(hs('{"sub": "ada", "aud": "chat"}'), opts))
            assert.equal("ok ada", verify(hs('{"sub": "ada", "aud": ["x", "chat"]}'), opts))
            assert.equal("ok ada", verify(hs('{"sub": "ada", "aud": "chat"}'),
                "{ keys = K.secret, algorithms = { 'HS256' }, audience = { 'game', 'chat' } }"))
            assert.equal("nil bad_audience", verify(hs('{"sub": "ada", "aud": "game"}'), opts))
            assert.equal("nil bad_audience", verify(hs('{"sub": "ada", "aud": ["x"]}'), opts))
            assert.equal("nil bad_audience", verify(hs('{"sub": "ada"}'), opts))
            -- a token meant for an audience, checked by a verifier that names none (RFC 7519)
            assert.equal("nil bad_audience", verify(hs('{"sub": "ada", "aud": "chat"}'), HS))
        end)

        it("bad_signature: a changed payload, another key", function()
            local token = hs('{"sub": "ada"}')
            local h, _, s = token:match("^([^.]+)%.([^.]+)%.([^.]+)$")
            local root = py_forge("{}", '{"sub":"root"}'):match("%.(.-)%.")
            local forged = h .. "." .. root .. "." .. s
            assert.equal("nil bad_signature", verify(forged, HS))
            assert.equal("nil bad_signature", verify(token,
                "{ keys = 'another-secret', algorithms = { 'HS256' } }"))
            assert.equal("nil bad_signature", verify(py_sign("RS256", "rsa2", '{"sub": "ada"}'),
                "{ keys = K.rsa_pub, algorithms = { 'RS256' } }"))
            -- an ES256 signature of another key, and one cut short
            local es = py_sign("ES256", "ec", '{"sub": "ada"}')
            assert.equal("nil bad_signature", verify(es:gsub("[^.]+$", function(sig)
                return (sig:sub(1, 10) == "AAAAAAAAAA" and "BBBBBBBBBB" or "AAAAAAAAAA")
                    .. sig:sub(11) end), "{ keys = K.ec_pub, algorithms = { 'ES256' } }"))
            assert.equal("nil bad_signature", verify(es:gsub("[^.]+$", string.rep("A", 84)),
                "{ keys = K.ec_pub, algorithms = { 'ES256' } }"))
            local ed = py_sign("EdDSA", "ed", '{"sub": "ada"}')
            assert.equal("nil bad_signature", verify(ed:sub(1, -3) .. (ed:sub(-2) == "AA" and
                "BA" or "AA"), "{ keys = K.ed_pub, algorithms = { 'EdDSA' } }"))
        end)

        local malformed = {
            { "not a token", "hello" },
            { "two parts", "eyJhbGciOiJIUzI1NiJ9.e30" },
            { "four parts", "eyJhbGciOiJIUzI1NiJ9.e30.e30.e30" },
            { "a header that is not base64url", "eyJhbGciOiJIUzI1NiJ9=.e30.AAAA" },
            { "a header that is not JSON", "bm90IGpzb24.e30.AAAA" },
            { "a header that is a JSON string", "IkhTMjU2Ig.e30.AAAA" },
            { "a header without alg", "e30.e30.AAAA" },
        }
        for _, m in ipairs(malformed) do
            it("malformed: " .. m[1], function()
                assert.equal("nil malformed", verify(m[2], HS))
            end)
        end

        it("malformed: a token over 16 KiB, a non-numeric exp, a payload that is not JSON",
           function()
            assert.equal("nil malformed", run("local c, r = mw.jwt.verify(string.rep('a', 16385), "
                .. HS .. ") return tostring(c) .. ' ' .. r"))
            assert.equal("nil malformed", verify(hs('{"sub": "ada", "exp": "tomorrow"}'), HS))
            local bad_payload = py_forge('{"alg":"HS256"}', "not json", "secret")
            assert.equal("nil malformed", verify(bad_payload, HS))
            local crit = py_forge('{"alg":"HS256","crit":["exp"]}', '{"sub":"ada"}', "secret")
            assert.equal("nil malformed", verify(crit, HS))
        end)

        it("unsupported_algorithm and algorithm_not_allowed", function()
            assert.equal("nil unsupported_algorithm", verify(py_forge('{"alg":"XS256"}',
                '{"sub":"ada"}', "secret"), HS))
            assert.equal("nil algorithm_not_allowed", verify(py_sign("HS384", "secret",
                '{"sub": "ada"}'), HS))
        end)

        it("bad_key: a key of the wrong kind, or too weak, for the token's algorithm", function()
            local any = "{ 'HS256', 'RS256', 'ES256', 'EdDSA' }"
            -- an RS256 token checked with a secret; an ES256 token with an RSA key
            assert.equal("nil bad_key", verify(py_sign("RS256", "rsa", '{"sub": "ada"}'),
                "{ keys = K.secret, algorithms = " .. any .. " }"))
            assert.equal("nil bad_key", verify(py_sign("ES256", "ec", '{"sub": "ada"}'),
                "{ keys = K.rsa_pub, algorithms = " .. any .. " }"))
            -- an EdDSA token with an EC key; an ES256 token with a P-384 key
            assert.equal("nil bad_key", verify(py_sign("EdDSA", "ed", '{"sub": "ada"}'),
                "{ keys = K.ec_pub, algorithms = " .. any .. " }"))
            assert.equal("nil bad_key", verify(py_sign("ES256", "ec", '{"sub": "ada"}'),
                "{ keys = K.ec384_pub, algorithms = " .. any .. " }"))
            -- RSA keys under 2048 bits; a PEM that does not parse; a private key as the verifier's
            assert.equal("nil bad_key", verify(py_sign("RS256", "rsa_short", '{"sub": "ada"}'),
                "{ keys = K.rsa_short_pub, algorithms = " .. any .. " }"))
            assert.equal("nil bad_key", verify(py_sign("RS256", "rsa", '{"sub": "ada"}'),
                "{ keys = '-----BEGIN PUBLIC KEY-----\\ngarbage\\n-----END PUBLIC KEY-----\\n', "
                .. "algorithms = " .. any .. " }"))
            assert.equal("nil bad_key", verify(py_sign("RS256", "rsa", '{"sub": "ada"}'),
                "{ keys = K.rsa, algorithms = " .. any .. " }"))
        end)
    end)

    describe("algorithm confusion", function()
        it("an HS256 token signed with the RSA public key PEM as the secret is refused", function()
            local token = py_forge('{"alg":"HS256","typ":"JWT"}', '{"sub":"root"}', "rsa_pub")
            -- the verifier holds that PEM and (wrongly) allows HS256 too: still refused
            assert.equal("nil bad_key", verify(token,
                "{ keys = K.rsa_pub, algorithms = { 'RS256', 'HS256' } }"))
            assert.equal("nil algorithm_not_allowed", verify(token,
                "{ keys = K.rsa_pub, algorithms = { 'RS256' } }"))
            -- the same trick with the PEM behind a kid
            local kid = py_forge('{"alg":"HS256","kid":"k1"}', '{"sub":"root"}', "rsa_pub")
            assert.equal("nil bad_key", verify(kid,
                "{ keys = { k1 = K.rsa_pub }, algorithms = { 'RS256', 'HS256' } }"))
        end)

        it("alg none is refused, and cannot be allowed", function()
            local none = py_forge('{"alg":"none"}', '{"sub":"root"}')
            assert.equal("nil unsupported_algorithm", verify(none, "{ keys = K.secret, "
                .. "algorithms = { 'HS256' } }"))
            local none_upper = py_forge('{"alg":"None"}', '{"sub":"root"}')
            assert.equal("nil unsupported_algorithm", verify(none_upper, "{ keys = K.secret, "
                .. "algorithms = { 'HS256' } }"))
            assert.matches("^error: .*'none' .*never accepted",
                verify(none, "{ keys = K.secret, algorithms = { 'none' } }"))
        end)

        it("misuse raises: no algorithms, no keys, wrong option types", function()
            assert.matches("^error: .*opts.algorithms must list",
                verify("a.b.c", "{ keys = K.secret }"))
            assert.matches("^error: .*opts.algorithms must list",
                verify("a.b.c", "{ keys = K.secret, algorithms = {} }"))
            assert.matches("^error: .*opts.keys", verify("a.b.c", "{ algorithms = { 'HS256' } }"))
            assert.matches("^error: .*opts.issuer", verify("a.b.c",
                "{ keys = K.secret, algorithms = { 'HS256' }, issuer = 5 }"))
            assert.matches("^error: .*opts.leeway", verify("a.b.c",
                "{ keys = K.secret, algorithms = { 'HS256' }, leeway = -1 }"))
            assert.matches("^error:", run("return mw.jwt.verify(5, { keys = K.secret, "
                .. "algorithms = { 'HS256' } })"))
        end)
    end)

    describe("mw.jwt.sign", function()
        local cases = { { "HS256", "secret", "secret" }, { "HS512", "secret", "secret" },
                        { "RS256", "rsa", "rsa_pub" }, { "ES256", "ec", "ec_pub" },
                        { "ES384", "ec384", "ec384_pub" }, { "EdDSA", "ed", "ed_pub" } }
        for _, case in ipairs(cases) do
            it(case[1] .. ": python3-jwt verifies its token, and so does mw.jwt.verify", function()
                local token = run("return mw.jwt.sign({ sub = 'ada', n = 7 }, K." .. case[2]
                    .. ", '" .. case[1] .. "', { kid = 'k1' })")
                assert.matches("^[%w_-]+%.[%w_-]+%.[%w_-]+$", token)
                assert.equal('{"n": 7, "sub": "ada"}', sh(PYTHON .. " " .. py .. " verify "
                    .. case[1] .. " " .. shell_quote(keyfile[case[3]]) .. " "
                    .. shell_quote(token)))
                assert.equal("ok ada", verify(token, "{ keys = { k1 = K." .. case[3]
                    .. " }, algorithms = { '" .. case[1] .. "' } }"))
            end)
        end

        it("refuses a key of the wrong kind or an unknown algorithm", function()
            local function sign(key, alg)
                return run("return mw.jwt.sign({}, K." .. key .. ", '" .. alg .. "')")
            end
            assert.matches("^error: .*needs a secret", sign("rsa", "HS256"))
            assert.matches("^error: .*PEM private key", sign("secret", "RS256"))
            assert.matches("^error: .*PEM private key", sign("rsa_pub", "RS256"))
            assert.matches("^error: .*PEM private key", sign("ec", "RS256"))
            -- an encrypted private key is refused, not asked about on the terminal
            assert.matches("^error: .*PEM private key",
                run("return mw.jwt.sign({}, K.ed_encrypted, 'EdDSA')"))
            assert.matches("^error: .*unknown algorithm 'none'",
                run("return mw.jwt.sign({}, K.secret, 'none')"))
        end)
    end)

    describe("app.upgrade", function()
        local SECRET = "upgrade-secret-0123456789abcdef"
        local function token(claims)
            write_file(dir .. "/upgrade-secret", SECRET)
            keyfile.upgrade = dir .. "/upgrade-secret"
            return py_sign("HS256", "upgrade", claims)
        end

        it("verifies req.query's token in one line and refuses with 401", function()
            local conn, err, resp = ws.connect(srv.port, { path = "/auth" })
            assert.is_nil(conn)
            assert.equal("refused with 401", err)
            assert.matches("^missing", resp.body)
            conn, err, resp = ws.connect(srv.port, { path = "/auth?mytoken=x" })
            assert.equal(401, resp.status)
            assert.matches("^missing", resp.body)
            conn, err, resp = ws.connect(srv.port, { path = "/auth?token="
                .. token('{"sub": "ada", "aud": "game"}') })
            assert.equal(401, resp.status)
            assert.matches("^bad_audience", resp.body)
            conn, err, resp = ws.connect(srv.port, { path = "/auth?token="
                .. token(string.format('{"sub": "ada", "aud": "chat", "exp": %d}',
                    os.time() - 5)) })
            assert.matches("^expired", resp.body)
            local good = token(string.format('{"sub": "ada", "aud": "chat", "exp": %d}',
                os.time() + 60))
            conn = assert(ws.connect(srv.port, { path = "/auth?room=1&token=" .. good }))
            conn:send_text("whoami")
            assert.equal("user ada", conn:recv_message())
            conn:close()
        end)
    end)
end)
