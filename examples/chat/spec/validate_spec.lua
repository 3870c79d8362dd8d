-- The chat example's input rules (examples/chat/validate.lua) as labelled cases of input ->
-- cleaned value or reason: plain Lua, no server (the app itself: chat_spec.lua).
--   build/moonwire test examples/chat/spec
-- The app's folder, from this file's path, so the spec runs from any working directory.
local APP = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/.."
package.path = APP .. "/?.lua;" .. package.path
local validate = require "validate"

-- Runs cases { label, input, want = cleaned value } or { label, input, err = reason pattern }.
local function check(fn, cases)
    for _, case in ipairs(cases) do
        it(case.label, function()
            local value, err = fn(case.input)
            if case.err then
                assert.is_nil(value)
                assert.is_string(err)
                assert.truthy(err:find(case.err), "reason: " .. tostring(err))
            else
                assert.is_nil(err)
                assert.equal(case.want, value)
            end
        end)
    end
end

describe("chat validate", function()
    describe("trim", function()
        check(validate.trim, {
            { label = "leaves a clean string alone", input = "ada", want = "ada" },
            { label = "strips spaces, tabs and newlines at both ends",
              input = " \t\nada lovelace \r\n", want = "ada lovelace" },
            { label = "keeps inner white space", input = "a  b", want = "a  b" },
            { label = "gives the empty string for blanks", input = " \t ", want = "" },
            { label = "gives the empty string for the empty string", input = "", want = "" },
        })

        it("is linear: a long run of inner spaces costs no backtracking", function()
            local s = "x" .. string.rep(" ", 200000) .. "y" .. string.rep(" ", 200000)
            local start = os.clock()
            assert.equal(#s - 200000, #validate.trim(s))
            assert.is_true(os.clock() - start < 0.5)
        end)
    end)

    describe("name", function()
        check(validate.name, {
            { label = "a plain name", input = "ada", want = "ada" },
            { label = "is trimmed", input = "  ada  ", want = "ada" },
            { label = "inner spaces are kept", input = "Ada Lovelace", want = "Ada Lovelace" },
            { label = "1 character is enough", input = "x", want = "x" },
            { label = "24 characters are allowed", input = string.rep("a", 24),
              want = string.rep("a", 24) },
            { label = "24 multi-byte characters are allowed (counted as characters)",
              input = string.rep("é", 24), want = string.rep("é", 24) },
            { label = "emoji count as one character each", input = string.rep("🙂", 24),
              want = string.rep("🙂", 24) },
            { label = "25 characters are too long", input = string.rep("a", 25),
              err = "too long" },
            { label = "25 multi-byte characters are too long", input = string.rep("é", 25),
              err = "too long" },
            { label = "far too long is refused before any work", input = string.rep("a", 5000),
              err = "too long" },
            { label = "spaces around 24 characters do not count",
              input = "   " .. string.rep("a", 24) .. "   ", want = string.rep("a", 24) },
            { label = "empty is refused", input = "", err = "empty" },
            { label = "blank is refused", input = "   ", err = "empty" },
            { label = "a newline inside is refused", input = "a\nb", err = "control" },
            { label = "a tab inside is refused", input = "a\tb", err = "control" },
            { label = "NUL is refused", input = "a\0b", err = "control" },
            { label = "ESC is refused", input = "a\27[31mb", err = "control" },
            { label = "DEL is refused", input = "a\127b", err = "control" },
            { label = "a C1 control is refused", input = "a\u{85}b", err = "control" },
            { label = "a bidi override is refused", input = "a\u{202E}b", err = "control" },
            { label = "a bidi isolate is refused", input = "a\u{2067}b", err = "control" },
            { label = "the line separator is refused", input = "a\u{2028}b", err = "control" },
            { label = "invalid UTF-8 is refused", input = "a\xffb", err = "UTF%-8" },
            { label = "a surrogate (CESU from a JSON escape) is refused",
              input = "a\xed\xa0\x80b", err = "UTF%-8" },
            { label = "a number is refused", input = 42, err = "string" },
            { label = "nil is refused", input = nil, err = "string" },
        })
    end)

    describe("room", function()
        check(validate.room, {
            { label = "letters", input = "general", want = "general" },
            { label = "case is kept", input = "General", want = "General" },
            { label = "digits, underscore and dash", input = "team_42-b", want = "team_42-b" },
            { label = "1 character", input = "a", want = "a" },
            { label = "32 characters", input = string.rep("r", 32), want = string.rep("r", 32) },
            { label = "33 characters are too long", input = string.rep("r", 33), err = "1 to 32" },
            { label = "empty is refused", input = "", err = "1 to 32" },
            { label = "a space is refused (no trimming)", input = " general", err = "1 to 32" },
            { label = "a dot is refused", input = "a.b", err = "1 to 32" },
            { label = "a slash is refused", input = "a/b", err = "1 to 32" },
            { label = "a colon is refused", input = "room:x", err = "1 to 32" },
            { label = "non-ASCII letters are refused", input = "café", err = "1 to 32" },
            { label = "NUL is refused", input = "a\0", err = "1 to 32" },
            { label = "a table is refused", input = {}, err = "string" },
        })
    end)

    describe("text", function()
        check(validate.text, {
            { label = "plain text", input = "hello there", want = "hello there" },
            { label = "is trimmed", input = "\n  hello  \n", want = "hello" },
            { label = "line breaks and tabs inside are kept", input = "a\n\tb", want = "a\n\tb" },
            { label = "2000 characters are allowed", input = string.rep("x", 2000),
              want = string.rep("x", 2000) },
            { label = "2000 four-byte characters are allowed", input = string.rep("🙂", 2000),
              want = string.rep("🙂", 2000) },
            { label = "2001 characters are too long", input = string.rep("x", 2001),
              err = "too long" },
            { label = "empty is refused", input = "", err = "empty" },
            { label = "only white space is refused", input = " \n\t ", err = "empty" },
            { label = "CR LF line ends become LF", input = "a\r\nb\r\n\r\nc", want = "a\nb\n\nc" },
            { label = "a lone carriage return is refused", input = "a\rb", err = "control" },
            { label = "NUL is refused", input = "a\0b", err = "control" },
            { label = "ESC is refused", input = "\27[2Jboo", err = "control" },
            { label = "a bidi override is refused", input = "abc\u{202D}def", err = "control" },
            { label = "invalid UTF-8 is refused", input = "\xc3", err = "UTF%-8" },
            { label = "a boolean is refused", input = true, err = "string" },
        })
    end)
end)
