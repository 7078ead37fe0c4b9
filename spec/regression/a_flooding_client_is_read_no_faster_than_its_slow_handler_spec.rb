# frozen_string_literal: true

require "spec_helper"
require_relative "../support/flood"

# Issue 18: a client that sends faster than its handler runs used to be read at full speed,
# every message queued in the server for the handler (256 MiB taken in 0.3 s from a client
# flooding a 20 ms on_message). Now a WebSocket or raw connection stops being read while
# 1 MiB or 64 received messages wait for its handler: the kernel's buffers fill, the client's
# sends block, the server's memory stays flat, other requests are served, and once the client
# stops the handler catches up and the connection works on, nothing lost.
#
# Each flood: 16 KiB messages written as fast as the socket takes them (nonblocking, the
# client's SO_SNDBUF 64 KiB so its own kernel buffer holds little) for 3 s, at most 160 MiB;
# on_message sleeps 20 ms; 2 Ruby workers.
RSpec.describe "a client flooding a slow handler (20 ms on_message)", :aggregate_failures do
  include FloodHelpers

  let(:seconds) { 3 }
  # What the client may get into the server in 3 s: the kernel's buffers on both sides, 1 MiB
  # waiting for the handler and the ~150 messages it handled (the old server: all 160 MiB).
  let(:sent_limit) { 32 * FloodHelpers::MIB }

  before { @server = flood_server(threads: 2) }
  after { @server&.stop }

  def flood_and_watch(request)
    warm_up(@server)
    flooder = flood(@server, { seconds: seconds, size: 16_384, max_bytes: 160 * FloodHelpers::MIB, after: "echo",
                      after_timeout: 20, sndbuf: 65_536 }.merge(request))
    watcher = watch(@server) # the server watched while the client floods
    result = flooder.result(seconds + 40)
    watcher.stop
    [result, watcher]
  ensure
    flooder&.kill
    watcher&.stop
  end

  def expect_bounded(result, watcher)
    measured("sent #{result['sent'].fdiv(FloodHelpers::MIB).round(1)} MiB in #{result['seconds']} s " \
             "(stopped by #{result['stopped_by']}, longest stall #{result['stall']} s); #{watcher.summary}; " \
             "echo after the flood: #{result['echo_seconds'].inspect} s")
    expect(result["stopped_by"]).to eq("time"), "the server took everything the client sent: #{result.inspect}"
    expect(result["sent"]).to be < sent_limit
    expect(watcher.rss_growth).to be < FloodHelpers::RSS_LIMIT
    expect(watcher.answers.uniq).to eq(["ok"])
    expect(watcher.max_latency).to be < FloodHelpers::BYSTANDER_LIMIT
    expect(result["error"]).to be_nil
  end

  %w[binary text].each do |frame|
    it "a WebSocket client sending #{frame} messages: sends block, RSS flat, a bystander served, then an echo and every message handled" do
      id = unique_id("ws-#{frame}")
      result, watcher = flood_and_watch(kind: "ws", path: "/slow?id=#{id}", frame: frame)
      expect_bounded(result, watcher)
      expect(result["reply"]).to eq("echo-after")
      stats = @server.stats_once_closed(id) # the client has left
      # Every frame the client sent was handled, then the echo: nothing dropped.
      expect(stats["messages"]).to eq(result["frames"] + 1)
      expect(stats["bytes"]).to eq((result["frames"] * 16_384) + "echo-after".bytesize)
      expect(stats["events"]).to eq(%w[open message close])
    end
  end

  it "a raw client (service: :raw): sends block, RSS flat, a bystander served, then every byte handled and answered" do
    id = unique_id("raw")
    result, watcher = flood_and_watch(kind: "raw", hello: "slow #{id}\n")
    expect_bounded(result, watcher)
    expect(result["reply"]).to eq("got #{result['sent']}")
    expect(@server.stats_once_closed(id)["events"]).to eq(%w[open message close])
  end
end
