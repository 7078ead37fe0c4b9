# frozen_string_literal: true

require "spec_helper"
require_relative "../support/flood"

# Issue 18: a connection's callbacks used to run on one Ruby worker for as long as its mailbox
# had events, so a client that keeps sending kept that worker: with `-t 1` nothing else (HTTP
# requests, other connections) ran. Now a turn ends after 32 events or 2 ms and the
# connection goes behind the other queued work. With one worker and floods that keep it busy
# all the time (1 ms handlers), a bystander's GET / and another WebSocket's echo are answered
# within 0.5 s.
RSpec.describe "one flooding connection on a single Ruby worker (-t 1)", :aggregate_failures do
  include FloodHelpers

  before { @server = flood_server(threads: 1) }
  after { @server&.stop }

  # Echo round trips of a third WebSocket, one every 0.1 s while `busy` answers true:
  # [handshake seconds, round-trip seconds each (a missing echo counts as 2 s)]; a handshake
  # not answered within 5 s is [Infinity, []].
  def echo_round_trips(busy)
    started = WsFrames.now
    times = []
    WsFrames::Client.open(@server.port, "/echo", timeout: 5) do |ws|
      handshake = WsFrames.now - started
      raise "no 101 for the third WebSocket: #{ws.head}" unless ws.upgraded?

      n = 0
      while busy.call
        sent_at = WsFrames.now
        ws.text("echo #{n += 1}")
        got = ws.read_message(2)
        times << (got == [:text, "echo #{n}"] ? WsFrames.now - sent_at : 2.0)
        break if got.nil?

        sleep 0.1
      end
      return [handshake, times]
    end
  rescue RuntimeError => e
    raise unless e.message.start_with?("no response head")

    [Float::INFINITY, times]
  end

  it "answers a GET / and another WebSocket's echo within 0.5 s while two WebSocket clients each send 10k messages/s to a 1 ms handler" do
    warm_up(@server)
    ids = Array.new(2) { unique_id("fast") }
    flooders = ids.map do |id|
      flood(@server, kind: "ws", path: "/fast?id=#{id}", frame: "text", size: 64, rate: 10_000, seconds: 3,
                     after: "close")
    end
    sleep 0.3 # the floods are under way
    watcher = watch(@server)
    handshake, echoes = echo_round_trips(-> { flooders.any?(&:running?) })
    results = flooders.map { |f| f.result(30) }
    watcher.stop
    handled = ids.map { |id| @server.handled(id) }
    measured("#{watcher.summary}; third WebSocket: handshake #{handshake.round(3)} s, #{echoes.size} echoes, " \
             "max #{echoes.max&.round(3)} s; the floods sent #{results.map { |r| r['frames'] }} messages, " \
             "the 1 ms handlers ran #{handled}")
    expect(results.map { |r| r["error"] }).to eq([nil, nil])
    # The floods kept the one worker busy the whole time.
    expect(handled.map(&:to_i)).to all(be >= 300)
    expect(watcher.answers.uniq).to eq(["ok"])
    expect(watcher.max_latency).to be < FloodHelpers::BYSTANDER_LIMIT
    expect(handshake).to be < FloodHelpers::BYSTANDER_LIMIT
    expect(echoes.size).to be >= 5
    expect(echoes.max || Float::INFINITY).to be < FloodHelpers::BYSTANDER_LIMIT
  ensure
    flooders&.each(&:kill)
    watcher&.stop
  end

  it "answers a GET / within 0.5 s while a raw client floods a 1 ms handler" do
    warm_up(@server)
    id = unique_id("raw-fast")
    flooder = flood(@server, kind: "raw", hello: "fast #{id}\n", size: 8192, seconds: 3, after: "close")
    started = WsFrames.now
    sleep 0.3
    watcher = watch(@server)
    result = flooder.result(30)
    # Watched for the flood's 3 s at least (a server that took it all at once is still busy).
    sleep [started + 3 - WsFrames.now, 0].max
    watcher.stop
    handled = @server.handled(id)
    measured("#{watcher.summary}; the flood sent #{result['sent'].fdiv(FloodHelpers::MIB).round(1)} MiB, " \
             "the 1 ms handler ran #{handled} times")
    expect(result["error"]).to be_nil
    expect(handled.to_i).to be >= 300
    expect(watcher.latencies.size).to be >= 10
    expect(watcher.answers.uniq).to eq(["ok"])
    expect(watcher.max_latency).to be < FloodHelpers::BYSTANDER_LIMIT
  ensure
    flooder&.kill
    watcher&.stop
  end
end
