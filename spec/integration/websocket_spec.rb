# frozen_string_literal: true

require "spec_helper"
require_relative "../support/realtime"

# The WebSocket server (api.md §4.4 upgrade decision, §4.7, §3.2 callbacks, and the
# compatibility policy's WebSocket fixes) with real clients: Python's `websockets` for what a
# browser does, raw frames (spec/support/ws_frames.rb) for what a broken or hostile client
# does. The app, spec/support/apps/ws_echo.ru, echoes and logs its callbacks per connection.
RSpec.describe "WebSocket" do
  include RealtimeHelpers

  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("ws_echo.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  def closed_log(id)
    wait_for_events(port, id) { |log| log.include?("close") }
  end

  describe "handshake" do
    it "answers 101 with the accept key, the upgrade headers and the app's headers (a cookie, the sub-protocol)" do
      id = unique_id("head")
      open_ws(port, "/headers?id=#{id}", headers: { "Sec-WebSocket-Protocol" => "chat, superchat" }) do |ws|
        expect(ws.status).to eq(101)
        expect(ws.upgraded?).to be(true), ws.head
        expect(ws.headers["upgrade"]).to match(/\Awebsocket\z/i)
        expect(ws.headers["connection"]).to match(/\bupgrade\b/i)
        expect(ws.headers["set-cookie"]).to eq("a=b")
        expect(ws.headers["sec-websocket-protocol"]).to eq("chat")
        ws.text("after the head")
        expect(ws.read_message).to eq([:text, "after the head"])
      end
      expect(closed_log(id)).to eq(["call :websocket", "open", "message UTF-8 14", "close"])
    end

    it "is accepted by a real client (python websockets), which gets the sub-protocol and the cookie" do
      result = ws_client(url: ws_url(port, "/headers"), subprotocols: %w[superchat chat],
                         steps: [{ send: "hi" }, { recv: 1 }])
      expect(result["error"]).to be_nil
      expect(result["subprotocol"]).to eq("superchat")
      expect(result["headers"]["set-cookie"]).to eq("a=b")
      expect(result["received"]).to eq([%w[text hi]])
      expect(result["close"]).to eq("code" => 1000, "reason" => "")
    end

    it "tells the app rack.upgrade? nil for a request without an upgrade" do
      id = unique_id("plain")
      expect(http_get(port, "/?id=#{id}").body).to eq("ok")
      expect(events(port, id)).to eq(["call nil"])
    end

    {
      "Sec-WebSocket-Version: 12" => { version: "12" },
      "no Sec-WebSocket-Version" => { version: nil },
      "no Sec-WebSocket-Key" => { key: nil }
    }.each do |what, options|
      it "answers 400 to an upgrade with #{what}, and runs the handler's on_close without on_open" do
        id = unique_id("bad")
        open_ws(port, "/?id=#{id}", **options) { |ws| expect(ws.status).to eq(400) }
        log = closed_log(id)
        expect(log.count("close")).to eq(1)
        expect(log).not_to include("open")
        expect_serving(@server)
      end
    end

    it "sends the app's own response when it answers 300 or more, and ignores the handler" do
      id = unique_id("refused")
      open_ws(port, "/refused?id=#{id}") do |ws|
        expect(ws.status).to eq(403)
        expect(ws.body).to eq("refused")
      end
      sleep 0.3
      expect(events(port, id)).to eq(["call :websocket"])
    end
  end

  describe "messages" do
    it "echoes text as text and binary as binary: on_message gets UTF-8 and ASCII-8BIT Strings" do
      id = unique_id("echo")
      all_bytes = (0..255).to_a.pack("C*").unpack1("H*")
      big = "é" * 100_000
      result = ws_client(url: ws_url(port, "/?id=#{id}"),
                         steps: [{ send: "héllo" }, { send_hex: all_bytes }, { send: big }, { recv: 3 }])
      expect(result["error"]).to be_nil
      expect(result["received"]).to eq([%w[text héllo], ["binary", all_bytes], ["text", big]])
      expect(closed_log(id).grep(/\Amessage/)).to eq(["message UTF-8 6", "message ASCII-8BIT 256", "message UTF-8 200000"])
    end

    it "hands on_message text Strings whose code range is set right: ASCII-only or not, never rescanned" do
      id = unique_id("probe")
      open_ws(port, "/?id=#{id}") do |ws|
        ws.text("probe plain")
        expect(ws.read_message).to eq([:text, "true true ASCII-8BIT false"])
        ws.text("probe #{'x' * 5000}é")
        expect(ws.read_message).to eq([:text, "false true incompatible false"])
        ws.send_frame(:text, "probe ", fin: false)
        ws.send_frame(:continuation, "in parts")
        expect(ws.read_message).to eq([:text, "true true ASCII-8BIT false"])
        ws.send_frame(:text, "probe caf\xC3".b, fin: false)
        ws.send_frame(:continuation, "\xA9".b)
        expect(ws.read_message).to eq([:text, "false true incompatible false"])
        ws.text("probe é")
        expect(ws.read_message).to eq([:text, "false true incompatible false"])
      end
    end

    it "reassembles fragmented messages (a ping between fragments, a character split across two)" do
      id = unique_id("fragments")
      open_ws(port, "/?id=#{id}") do |ws|
        ws.send_frame(:text, "Hello, ", fin: false)
        ws.ping("between")
        ws.send_frame(:continuation, "caf\xC3".b, fin: false)
        ws.send_frame(:continuation, "\xA9!".b)
        pong = ws.read_frame(5)
        expect([pong&.opcode, pong&.payload]).to eq([:pong, "between"])
        expect(ws.read_message).to eq([:text, "Hello, café!"])

        ws.send_frame(:binary, "\x00\x01".b, fin: false)
        ws.send_frame(:continuation, "", fin: false)
        ws.send_frame(:continuation, "\x02".b)
        expect(ws.read_message).to eq([:binary, "\x00\x01\x02".b])
      end
      expect(closed_log(id).grep(/\Amessage/)).to eq(["message UTF-8 13", "message ASCII-8BIT 3"])
    end

    # Outgoing text is not validated again in Rust: the binding goes by the String's code
    # range, and a published message is checked once for all its subscribers.
    it "never sends invalid UTF-8 as text: a broken UTF-8 String, written or published, goes out binary" do
      open_ws(port, "/?id=#{unique_id('broken')}") do |ws|
        ws.text("broken")
        expect(ws.read_message).to eq([:binary, "bad \xC3\x28 utf-8".b])
        ws.text("subscribe broken-channel")
        expect(ws.read_message).to eq([:text, "subscribed"])
        open_ws(port, "/?id=#{unique_id('subscriber')}") do |other|
          other.text("subscribe broken-channel")
          expect(other.read_message).to eq([:text, "subscribed"])
          ws.text("publish-broken broken-channel")
          expect(ws.read_message).to eq([:binary, "bad \xC3\x28 utf-8".b])
          expect(other.read_message).to eq([:binary, "bad \xC3\x28 utf-8".b])
        end
        ws.text("héllo")
        expect(ws.read_message).to eq([:text, "héllo"])
      end
    end

    it "answers each ping with a pong carrying the same payload, an empty one included" do
      open_ws(port, "/") do |ws|
        ["payload-1", "", "\x00\xFF".b, "p" * 125].each do |payload|
          ws.ping(payload)
          frame = ws.read_frame(5)
          expect([frame&.opcode, frame&.payload]).to eq([:pong, payload.b])
        end
      end
      result = ws_client(url: ws_url(port, "/"), steps: [{ ping: "from python" }, { send: "x" }, { recv: 1 }])
      expect(result["error"]).to be_nil
      expect(result["pongs"]).to eq(1)
    end
  end

  describe "closing" do
    [1000, 1001, 4001].each do |code|
      it "answers a Close #{code} with a Close #{code}, closes the socket and runs on_close" do
        id = unique_id("close")
        open_ws(port, "/?id=#{id}") do |ws|
          ws.close(code, "see you")
          frame = ws.read_close(5)
          expect(frame&.close_code).to eq(code)
          expect(ws.eof_within?(5)).to be(true)
        end
        expect(closed_log(id)).to eq(["call :websocket", "open", "close"])
      end
    end

    it "answers a real client's Close with its code (python websockets)" do
      result = ws_client(url: ws_url(port, "/"), steps: [{ send: "a" }, { recv: 1 }, { close: 4000, reason: "done" }])
      expect(result["error"]).to be_nil
      expect(result["close"]["code"]).to eq(4000)
    end

    {
      "an unmasked frame" => [1002, ->(ws) { ws.send_frame(:text, "naked", mask: false) }],
      "a frame with RSV1 set" => [1002, ->(ws) { ws.send_frame(:text, "rsv", rsv: 4) }],
      "a frame with RSV3 set" => [1002, ->(ws) { ws.send_frame(:binary, "rsv", rsv: 1) }],
      "a reserved opcode (3)" => [1002, ->(ws) { ws.send_frame(3, "?") }],
      "a continuation frame with no message begun" => [1002, ->(ws) { ws.send_frame(:continuation, "orphan") }],
      "a new message inside a fragmented one" => [1002, lambda { |ws|
        ws.send_frame(:text, "first", fin: false)
        ws.send_frame(:text, "second")
      }],
      "a fragmented ping" => [1002, ->(ws) { ws.send_frame(:ping, "half", fin: false) }],
      "a ping of 126 bytes" => [1002, ->(ws) { ws.send_frame(:ping, "p" * 126) }],
      "invalid UTF-8 in a text message" => [1007, ->(ws) { ws.send_frame(:text, "bad \xC3\x28".b) }],
      "a text message that ends inside a character" => [1007, ->(ws) { ws.send_frame(:text, "cut \xC3".b) }],
      "invalid UTF-8 across the fragments of a text message" => [1007, lambda { |ws|
        ws.send_frame(:text, "ok \xC3".b, fin: false)
        ws.send_frame(:continuation, "\x28".b)
      }]
    }.each do |what, (code, send)|
      it "closes with #{code} on #{what}, runs on_close and keeps serving" do
        id = unique_id("protocol")
        open_ws(port, "/?id=#{id}") do |ws|
          send.call(ws)
          expect_close(ws, code)
        end
        log = closed_log(id)
        expect(log).to include("close")
        expect(log.grep(/\Amessage/)).to eq([])
        expect_serving(@server)
      end
    end

    {
      "a FIN" => ->(ws) { ws.close_socket },
      "an RST" => ->(ws) { ws.close_socket(reset: true) },
      "a FIN in the middle of a frame" => lambda { |ws|
        ws.write(WsFrames.encode(:text, "x" * 1000).byteslice(0, 100))
        ws.close_socket
      }
    }.each do |how, leave|
      it "runs on_close when the client vanishes without a Close (#{how})" do
        id = unique_id("vanish")
        ws = open_ws(port, "/?id=#{id}")
        ws.text("here")
        expect(ws.read_message).to eq([:text, "here"])
        leave.call(ws)
        expect(closed_log(id)).to eq(["call :websocket", "open", "message UTF-8 4", "close"])
      ensure
        ws&.close_socket
      end
    end

    {
      "an HTTP request" => "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      "zero bytes" => "\x00" * 64,
      "a frame header declaring 2^63 - 1 bytes" => "#{[0x82, 0xFF, (2**63) - 1].pack('CCQ>')}MASKabcd",
      "a frame header declaring 2^64 - 1 bytes (its top bit must be 0)" => "#{[0x82, 0xFF, (2**64) - 1].pack('CCQ>')}MASKabcd"
    }.each do |what, garbage|
      it "drops a client that sends #{what} after the handshake, and keeps serving the others" do
        id = unique_id("garbage")
        open_ws(port, "/?id=#{id}") do |ws|
          ws.write(garbage.b)
          expect_dropped(ws)
        end
        expect(closed_log(id)).to include("close")
        open_ws(port, "/") do |ws|
          ws.text("still here")
          expect(ws.read_message).to eq([:text, "still here"])
        end
        expect_serving(@server)
      end
    end

    it "logs an on_message that raises and keeps serving the other clients" do
      id = unique_id("raise")
      open_ws(port, "/raise?id=#{id}") do |ws|
        ws.text("boom please")
        expect(wait_for_events(port, id) { |log| log.include?("message UTF-8 11") }).to include("message UTF-8 11")
        expect(eventually { @server.log.include?("on_message boom (#{id})") }).to be(true), @server.log.lines.last(20).join
      end
      result = ws_client(url: ws_url(port, "/"), steps: [{ send: "after the boom" }, { recv: 1 }])
      expect(result["received"]).to eq([["text", "after the boom"]])
      expect_serving(@server)
    end
  end

  context "with -maxms 1 (messages up to 1 KiB)" do
    before(:all) { @small = ServerProcess.new(["-maxms", "1", app_path("ws_echo.ru")]) }
    after(:all) { @small&.stop }

    it "echoes a message of exactly 1024 bytes, whole or in fragments" do
      open_ws(@small.port, "/") do |ws|
        ws.binary("b" * 1024)
        expect(ws.read_message).to eq([:binary, "b" * 1024])
        4.times { |i| ws.send_frame(i.zero? ? :text : :continuation, "t" * 256, fin: i == 3) }
        expect(ws.read_message).to eq([:text, "t" * 1024])
      end
    end

    it "closes with 1009 on a single frame of 1025 bytes" do
      id = unique_id("big")
      open_ws(@small.port, "/?id=#{id}") do |ws|
        ws.text("t" * 1025)
        expect_close(ws, 1009)
      end
      log = wait_for_events(@small.port, id) { |l| l.include?("close") }
      expect(log).to eq(["call :websocket", "open", "close"])
    end

    it "closes with 1009 on a fragmented message whose fragments add up to more than 1 KiB" do
      id = unique_id("big-fragments")
      open_ws(@small.port, "/?id=#{id}") do |ws|
        ws.send_frame(:binary, "f" * 600, fin: false)
        ws.send_frame(:continuation, "f" * 600, fin: false)
        ws.send_frame(:continuation, "f" * 600)
        expect_close(ws, 1009)
      end
      log = wait_for_events(@small.port, id) { |l| l.include?("close") }
      expect(log).to eq(["call :websocket", "open", "close"])
    end
  end

  context "with -ping 1" do
    it "pings an idle client every second, and the connection stays usable" do
      server = ServerProcess.new(["-ping", "1", app_path("ws_echo.ru")])
      open_ws(server.port, "/") do |ws|
        pings = []
        deadline = WsFrames.now + 4.5
        while pings.size < 2 && (frame = ws.read_frame(deadline - WsFrames.now))
          pings << frame if frame.opcode == :ping
        end
        expect(pings.size).to eq(2), "#{pings.size} pings in 4.5 s"
        ws.send_frame(:pong, pings.last.payload)
        ws.text("still open")
        expect(ws.read_message).to eq([:text, "still open"])
      end
    ensure
      server&.stop
    end
  end
end
