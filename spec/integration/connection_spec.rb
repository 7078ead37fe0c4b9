# frozen_string_literal: true

require "spec_helper"
require_relative "../support/realtime"

# Iodine::Connection (api.md §3) over WebSocket: what each method answers while open, during
# on_close and afterwards; handler swaps; close after queued writes; on_drained; the
# per-connection guarantee (callbacks never overlap, always in order) under -t 4 with many
# clients; crowds; backpressure; graceful shutdown. The app is
# spec/support/apps/ws_connection.ru.
RSpec.describe "Iodine::Connection" do
  include RealtimeHelpers

  before(:all) { @server = ServerProcess.new(["-t", "4", app_path("ws_connection.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  def stats
    JSON.parse(http_get(port, "/stats").body)
  end

  describe "its methods" do
    it "answer while open: write true, open?, pending, protocol, timeout (the ping in effect, as the C gem; and its errors), env, handler, pubsub?" do
      id = unique_id("methods")
      open_ws(port, "/methods?id=#{id}") do |ws|
        expect(ws.read_message).to eq([:text, "x"])
        kind, json = ws.read_message
        expect(kind).to eq(:text)
        report = JSON.parse(json)
        expect(report).to include(
          "write" => true, "open?" => true, "protocol" => ":websocket", "timeout" => 40,
          "timeout=0" => 0, "timeout=255" => 255, "timeout=" => 10, "timeout then" => 10, "timeout=256" => "RangeError", "timeout=-1" => "RangeError",
          "timeout='5'" => "TypeError", "timeout=1.5" => "TypeError",
          "env" => ["Hash", "/methods", ":websocket"], "handler" => true, "pubsub?" => 0
        )
        expect(report["pending"]).to be_a(Integer).and be >= 0
      end
    end

    it "write sends a UTF-8 String as a text frame, any other encoding (US-ASCII, binary, Latin-1) as binary" do
      open_ws(port, "/encodings") do |ws|
        frames = Array.new(5) { ws.read_message }
        expect(frames).to eq([[:text, "utf8 é"], [:binary, "ascii".b], [:binary, "bin".b], [:binary, "caf\xE9".b],
                              [:text, "write answers [true, true, true, true]"]])
      end
    end

    it "answer during on_close: write nil, open? false, env, handler and protocol still there" do
      id = unique_id("during")
      open_ws(port, "/methods?id=#{id}") { |ws| ws.messages(2) }
      log = wait_for_events(port, id) { |l| l.any? { |line| line.start_with?("close") } }
      expect(log).to eq(["close write=nil open?=false env=Hash handler=true protocol=:websocket"])
    end

    it "answer after on_close: write/subscribe/unsubscribe nil, pending -1, protocol/env/handler/timeout nil, close harmless" do
      id = unique_id("after")
      open_ws(port, "/methods?id=#{id}") do |ws|
        ws.messages(2)
        ws.close(1000)
        ws.read_close
      end
      wait_for_events(port, id) { |l| l.any? { |line| line.start_with?("close") } }
      sleep 0.2 # on_close has returned
      after = JSON.parse(http_get(port, "/after?id=#{id}").body)
      expect(after).to eq("write" => "nil", "open?" => false, "pending" => -1, "protocol" => "nil", "env" => "nil",
                          "handler" => "nil", "timeout" => "nil", "subscribe" => "nil", "unsubscribe" => "nil",
                          "close" => "none")
    end
  end

  it "calls on_drained once right after on_open, and again when a backlog drains" do
    id = unique_id("drained")
    open_ws(port, "/drained?id=#{id}") do |ws|
      expect(wait_for_events(port, id) { |l| l.size >= 2 }.first(2)).to eq(%w[open drained])
      ws.text("flood")
      sleep 0.5 # reads nothing for a while: 4 MiB wait in the server
      expect(ws.messages(64, 20).map(&:bytesize).uniq).to eq([65_536])
      log = wait_for_events(port, id) { |l| l.include?("message") && l[l.index("message")..].include?("drained") }
      expect(log[log.index("message")..]).to include("drained")
    end
  end

  it "close sends every queued message first (100 of 10 KB), then a Close, then closes the socket" do
    id = unique_id("flood")
    open_ws(port, "/flood?id=#{id}") do |ws|
      sleep 0.3 # the 1 MB queues up unread
      received = []
      close = nil
      loop do
        kind, data = ws.read_message(10)
        raise "neither a message nor a Close after #{received.size} messages" unless kind
        break close = data if kind == :close

        received << data
      end
      expect(received.map { |m| m[/\Am\d+/] }).to eq(Array.new(100) { |i| "m#{i}" })
      expect(received.map(&:bytesize)).to eq(Array.new(100) { |i| "m#{i}:".bytesize + 10_000 })
      expect(close.opcode).to eq(:close)
      ws.close
      expect(ws.eof_within?(5)).to be(true)
    end
    expect(wait_for_events(port, id) { |l| l.include?("close") }).to eq(["wrote 100 then closed", "close"])
  end

  describe "handler=" do
    it "swaps: the old handler's on_close, then the new one's on_open; the new one gets the messages" do
      id = unique_id("swap")
      open_ws(port, "/swap?id=#{id}") do |ws|
        ws.text("same")
        expect(ws.read_message).to eq([:text, "still A"])
        ws.text("swap")
        expect(ws.read_message).to eq([:text, "B here, handler is SwapB"])
        ws.text("hi")
        expect(ws.read_message).to eq([:text, "B:hi"])
        ws.close(1000)
        expect(ws.read_close&.close_code).to eq(1000)
      end
      log = wait_for_events(port, id) { |l| l.include?("B close") }
      expect(log).to eq(["A open", "A message same", "A message swap", "A close", "B open", "B message hi", "B close"])
    end

    %w[nil false].each do |value|
      it "= #{value} closes the connection, with one on_close" do
        id = unique_id("swap-#{value}")
        open_ws(port, "/swap?id=#{id}") do |ws|
          ws.text(value)
          expect_dropped(ws)
        end
        wait_for_events(port, id) { |l| l.include?("A close") }
        sleep 0.2
        expect(events(port, id)).to eq(["A open", "A message #{value}", "A close"])
      end
    end
  end

  describe "per-connection serialization" do
    it "never overlaps one connection's callbacks and keeps them in order (-t 4, 50 clients x 100 messages)" do
      result = ws_client(mode: "fleet", url: ws_url(port, "/ordered"), clients: 50, count: 100, send: "c{c}-m{i}",
                         timeout: 60)
      expect(result["failures"]).to eq([])
      expect(result["ok"]).to eq(50)
      now = stats
      expect(now["overlaps"]).to eq(0)
      expect(now["order_errors"]).to eq(0)
      expect(now["threads"].size).to be > 1
    end

    it "runs different connections' callbacks in parallel (4 on_message of 0.5 s with -t 4)" do
      clients = Array.new(4) { open_ws(port, "/sleepy") }
      started = WsFrames.now
      clients.each { |ws| ws.text("slow") }
      replies = clients.map { |ws| ws.read_message(5) }
      elapsed = WsFrames.now - started
      expect(replies).to all(eq([:text, "done"]))
      expect(elapsed).to be < 1.5
    ensure
      clients&.each(&:close_socket)
    end
  end

  it "echoes for 1,000 concurrent clients, each in order" do
    result = ws_client(mode: "fleet", url: ws_url(port, "/ordered"), clients: 1000, count: 5, send: "c{c}-m{i}",
                       timeout: 90, connect_parallel: 200, kill_after: 120)
    expect(result["failures"]).to eq([])
    expect(result["ok"]).to eq(1000)
    expect(stats["order_errors"]).to eq(0)
    expect_serving(@server)
  end

  it "never blocks write: past 16 MiB unsent to a client that reads nothing, write answers nil and the connection closes" do
    id = unique_id("firehose")
    ws = open_ws(port, "/firehose?id=#{id}")
    ws.text("go")
    log = wait_for_events(port, id, seconds: 15) { |l| l.include?("close") && l.any? { |e| e.start_with?("firehose") } }
    line = log.find { |e| e.start_with?("firehose") }
    expect(line).not_to be_nil, "the handler's writes did not finish: #{log.inspect}"
    accepted = line[/accepted=(\d+)/, 1].to_i
    # 1 MiB writes: 16 MiB of buffer, plus what the kernel's socket buffers took, then nil.
    expect(accepted).to be_between(1, 32)
    expect(line[/seconds=([\d.]+)/, 1].to_f).to be < 5
    expect(log).to include("close")
    expect_serving(@server)
  ensure
    ws&.close_socket(reset: true)
  end

  describe "graceful shutdown (TERM)" do
    def logged(server, id)
      server.log.lines.grep(/\Aevent #{Regexp.escape(id)}: /).map { |line| line.split(": ", 2).last.strip }
    end

    it "runs on_shutdown (whose goodbye arrives), sends Close 1001, runs on_close and exits 0" do
      server = ServerProcess.new(["-t", "2", app_path("ws_connection.ru")])
      id = unique_id("bye")
      ws = open_ws(server.port, "/goodbye?id=#{id}")
      expect(eventually { logged(server, id).include?("open") }).to be(true)
      server.signal("TERM")
      expect(ws.read_message(10)).to eq([:text, "bye"])
      expect(ws.read_close(10)&.close_code).to eq(1001)
      ws.close(1001)
      expect(ws.eof_within?(10)).to be(true)
      expect(server.wait(15)&.exitstatus).to eq(0)
      expect(logged(server, id)).to eq(%w[open shutdown close])
    ensure
      ws&.close_socket
      server&.stop
    end

    it "still exits 0 in time when a client never answers the Close" do
      server = ServerProcess.new(["-t", "2", app_path("ws_connection.ru")])
      id = unique_id("mute")
      ws = open_ws(server.port, "/goodbye?id=#{id}")
      expect(eventually { logged(server, id).include?("open") }).to be(true)
      started = WsFrames.now
      server.signal("TERM")
      expect(server.wait(15)&.exitstatus).to eq(0)
      expect(WsFrames.now - started).to be < 12
      expect(logged(server, id)).to eq(%w[open shutdown close])
    ensure
      ws&.close_socket
      server&.stop
    end
  end
end
