# frozen_string_literal: true

require "spec_helper"

# `run_every(5) { sleep 0.02 }` used to queue a new run every tick: a GET waited 3 s after
# 3 s of uptime and 11 s after 8 s. A repeating timer now has at most one run queued or
# running; the ticks it skips are counted.
RSpec.describe "a repeating timer slower than its period" do
  before(:all) { @server = ServerProcess.new(["-t", "1", app_path("slow_repeating_timer.ru")]) }
  after(:all) { @server&.stop }

  it "leaves requests answered at once, however long it has run, and counts the ticks it skipped" do
    latencies = Array.new(8) do
      sleep 0.5
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      expect(http_get(@server.port, "/").body).to eq("ok")
      Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    end
    expect(latencies.max).to be < 0.5, latencies.inspect
    runs, skipped = http_get(@server.port, "/stats").body.split.map(&:to_i)
    # About 4 s of 20 ms runs: at most 200, and the ticks between them skipped.
    expect(runs).to be_between(20, 260)
    expect(skipped).to be > runs
  end
end
