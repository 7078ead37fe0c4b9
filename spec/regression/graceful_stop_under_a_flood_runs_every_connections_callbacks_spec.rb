# frozen_string_literal: true

require "spec_helper"
require_relative "../support/flood"

# Issue 18: a graceful stop (TERM) while clients flood their handlers. on_shutdown and on_close
# are events behind a connection's queued messages; the old server had queued everything a
# flooding client sent (minutes of 20 ms on_message calls), so those connections never got
# their on_shutdown within the 8 s the stop may take. Now at most 64 messages wait: 50
# connections (40 idle WebSockets, 2 idle raw, 5 flooding WebSockets and 3 flooding raw
# clients, on slow and fast handlers) each get on_shutdown and on_close, and the server
# exits 0 within the grace period.
RSpec.describe "a graceful stop while clients flood their handlers", :aggregate_failures do
  include FloodHelpers

  it "runs on_shutdown and on_close for each of 50 connections and exits 0 within 8 s" do
    server = flood_server(threads: 2)
    floods = {
      "ws-slow" => ->(id) { { kind: "ws", path: "/slow?id=#{id}", frame: "binary", size: 16_384 } },
      "ws-fast" => ->(id) { { kind: "ws", path: "/fast?id=#{id}", frame: "text", size: 256 } },
      "raw-slow" => ->(id) { { kind: "raw", hello: "slow #{id}\n", size: 16_384 } },
      "raw-fast" => ->(id) { { kind: "raw", hello: "fast #{id}\n", size: 8192 } }
    }
    # The idle ones first (their upgrades are requests a worker answers).
    idle_ws = Array.new(40) { unique_id("idle-ws") }
    clients = idle_ws.map { |id| WsFrames::Client.new(server.port, "/echo?id=#{id}", wait: false) }
    clients.each { |ws| ws.read_head(10) }
    expect(clients.map(&:upgraded?).uniq).to eq([true])
    idle_raw = Array.new(2) { unique_id("idle-raw") }
    raw_sockets = idle_raw.map do |id|
      TCPSocket.new("127.0.0.1", server.raw_port).tap { |s| s.write("echo #{id}\n") }
    end
    plan = %w[ws-slow ws-slow ws-slow ws-fast ws-fast raw-slow raw-slow raw-fast]
    flooding = plan.map { |kind| [unique_id(kind), kind] }
    flooders = flooding.map do |id, kind|
      # They flood until the server closes them (20 s at most, 160 MiB at most: a closing
      # WebSocket session reads and drops what comes while it waits for the Close answer),
      # never reading.
      flood(server, { seconds: 20, max_bytes: 160 * FloodHelpers::MIB, after: "none", sndbuf: 65_536 }
        .merge(floods.fetch(kind).call(id)))
    end
    ids = flooding.map(&:first) + idle_ws + idle_raw
    expect(ids.size).to eq(50)
    opened = eventually(10) { ids.all? { |id| server.logged(id).include?("open") } }
    expect(opened).to be(true), "not every connection opened: #{ids.reject { |id| server.logged(id).include?('open') }}"
    sleep 1.5 # the floods fill what waits for the handlers
    busy = flooding.map { |id, _| server.handled(id) }
    expect(busy).to all(be_positive)
    expect(flooders.all?(&:running?)).to be(true), "a flooder ended before the stop"

    started = WsFrames.now
    server.signal("TERM")
    # The idle WebSocket clients answer the server's Close, as a browser would.
    closer = Thread.new do
      clients.each do |ws|
        frame = ws.read_close(10)
        ws.close(frame.close_code) if frame
      end
    end
    status = server.wait(20)
    took = WsFrames.now - started
    closer.join(5) || closer.kill
    results = flooders.map { |f| f.result(30) }
    missing = ids.each_with_object({}) do |id, out|
      lines = server.logged(id)
      out[id] = lines unless lines == %w[open shutdown close]
    end
    measured("stopped in #{took.round(2)} s (#{status.inspect}); #{missing.size} of 50 connections without " \
             "open, shutdown, close (#{missing.values.tally}); the floods sent " \
             "#{results.map { |r| r['sent'].fdiv(FloodHelpers::MIB).round(1) }} MiB, stopped by #{results.map { |r| r['stopped_by'] }.uniq}")
    expect(status&.exitstatus).to eq(0)
    expect(took).to be < 8.5
    expect(missing).to eq({})
  ensure
    flooders&.each(&:kill)
    clients&.each(&:close_socket)
    raw_sockets&.each(&:close)
    closer&.kill
    server&.stop
  end

  # The smallest case of the above: a raw session ends as soon as on_shutdown has run, while
  # messages it read after the stop began still wait for the handler, on_close behind them.
  it "runs on_close for a single raw client flooding a 20 ms handler" do
    server = flood_server(threads: 2)
    id = unique_id("raw-slow")
    flooder = flood(server, kind: "raw", hello: "slow #{id}\n", size: 16_384, seconds: 20,
                            max_bytes: 160 * FloodHelpers::MIB, after: "none", sndbuf: 65_536)
    expect(eventually(5) { server.handled(id).to_i >= 10 }).to be(true)
    started = WsFrames.now
    server.signal("TERM")
    status = server.wait(20)
    took = WsFrames.now - started
    measured("stopped in #{took.round(2)} s (#{status.inspect}); logged #{server.logged(id)}")
    expect(status&.exitstatus).to eq(0)
    expect(took).to be < 8.5
    expect(server.logged(id)).to eq(%w[open shutdown close])
  ensure
    flooder&.kill
    server&.stop
  end

  def eventually(seconds)
    deadline = WsFrames.now + seconds
    loop do
      value = yield
      return value if value || WsFrames.now > deadline

      sleep 0.1
    end
  end
end
