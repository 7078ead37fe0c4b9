# frozen_string_literal: true

require "spec_helper"
require_relative "../support/flood"

# Issue 18: every ping is answered with a pong, and the old server kept reading pings from a
# client that never read its pongs: they piled up in the WebSocket's write buffer (+462 MiB of
# RSS for 257 MiB of pings). Now reading pauses once 64 KiB of pongs are owed: the kernel's
# buffers fill, the client's sends block for good, the server's memory stays flat.
RSpec.describe "pings from a WebSocket client that never reads", :aggregate_failures do
  include FloodHelpers

  before { @server = flood_server(threads: 2) }
  after { @server&.stop }

  it "stop being read: the client's sends block, RSS grows under 64 MiB, a bystander is served" do
    warm_up(@server)
    id = unique_id("pings")
    # 125-byte pings (the largest a control frame carries), as fast as the socket takes them, for 3 s.
    flooder = flood(@server, kind: "ws", path: "/echo?id=#{id}", frame: "ping", size: 125, seconds: 3,
                             max_bytes: 160 * FloodHelpers::MIB, after: "none")
    watcher = watch(@server)
    result = flooder.result(30)
    watcher.stop
    measured("sent #{result['sent'].fdiv(FloodHelpers::MIB).round(1)} MiB of pings (#{result['frames']}) in " \
             "#{result['seconds']} s, stopped by #{result['stopped_by']}, longest stall #{result['stall']} s; #{watcher.summary}")
    expect(result["error"]).to be_nil
    expect(result["stopped_by"]).to eq("time"), "the server took every ping: #{result.inspect}"
    # What the kernel's buffers hold both ways (the pongs fill the client's receive buffer),
    # then nothing: the server no longer reads.
    expect(result["sent"]).to be < 32 * FloodHelpers::MIB
    expect(result["stall"]).to be >= 1.0
    expect(watcher.rss_growth).to be < FloodHelpers::RSS_LIMIT
    expect(watcher.answers.uniq).to eq(["ok"])
    expect(watcher.max_latency).to be < FloodHelpers::BYSTANDER_LIMIT
    # The client has gone (its process ended): the connection closes.
    expect(@server.stats_once_closed(id)["events"]).to eq(%w[open close])
  ensure
    flooder&.kill
    watcher&.stop
  end
end
