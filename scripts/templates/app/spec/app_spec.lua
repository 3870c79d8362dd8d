-- Specs for {{name}}, inside the real runtime (docs/testing.md):
--   moonwire test {{name}}/spec
local t = require "moonwire.test"

describe("{{name}}", function()
    local server

    before_each(function()
        server = t.start() -- the app in the folder above spec/
    end)

    after_each(function()
        server:stop()
    end)

    it("welcomes a client with its id", function()
        local alice = server:connect()
        local hello = alice:receive_json()
        assert.equal("welcome", hello.type)
        assert.equal(1, hello.online)
    end)

    it("gives what one client says to everyone", function()
        local alice = server:connect()
        local id = alice:receive_json().id
        local bob = server:connect()
        bob:receive_json() -- bob's welcome
        alice:send_json { text = "hello" }
        assert.same({ type = "said", from = id, text = "hello" }, bob:receive_json())
        assert.same({ type = "said", from = id, text = "hello" }, alice:receive_json())
    end)

    it("answers a message it cannot read with an error", function()
        local alice = server:connect()
        alice:receive_json()
        alice:send "not json"
        assert.equal("error", alice:receive_json().type)
        assert.is_false(alice.closed)
    end)

    it("serves its page", function()
        local status, page = server:request { path = "/" }
        assert.equal(200, status)
        assert.truthy(page:find("new WebSocket", 1, true))
    end)

    it("tells the others when a client leaves", function()
        local alice, bob = server:connect(), server:connect()
        local id = alice:receive_json().id
        bob:receive_json()
        alice:close(1000)
        assert.same({ type = "left", id = id }, bob:receive_json())
    end)
end)
