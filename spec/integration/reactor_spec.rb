# frozen_string_literal: true

require "spec_helper"
require_relative "../support/realtime"

# Long-lived connections run on the reactor the Ruby workers take turns to drive (a
# connection's callbacks run on the thread that read its messages). A worker that holds the
# reactor and runs a slow callback must not hold back the other connections, nor the writes
# its callback made before it slowed down: another worker takes the reactor over.
RSpec.describe "The reactor under a slow callback" do
  include RealtimeHelpers

  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("ws_echo.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  def elapsed
    start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    yield
    Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
  end

  it "sends what a callback wrote before it slept, and serves the other connections meanwhile" do
    open_ws(port, "/sleepy?id=#{unique_id('sleepy')}") do |sleepy|
      open_ws(port, "/?id=#{unique_id('other')}") do |other|
        other.text("warm")
        expect(other.read_message).to eq([:text, "warm"])
        sleepy.text("sleep 2")
        took = elapsed { expect(sleepy.read_message(1.5)).to eq([:text, "before"]) }
        expect(took).to be < 1.0
        # The sleeper's worker is still in its callback: the other worker serves this one.
        5.times do |i|
          took = elapsed do
            other.text("ping #{i}")
            expect(other.read_message(1.5)).to eq([:text, "ping #{i}"])
          end
          expect(took).to be < 0.5
        end
        expect(sleepy.read_message(3)).to eq([:text, "after"])
        sleepy.text("again")
        expect(sleepy.read_message).to eq([:text, "again"])
      end
    end
  end

  it "keeps order per connection when a burst of messages meets a slow one" do
    open_ws(port, "/sleepy?id=#{unique_id('order')}") do |ws|
      ws.text("one")
      ws.text("sleep 0.3")
      20.times { |i| ws.text("m#{i}") }
      expected = ["one", "before", "after", *Array.new(20) { |i| "m#{i}" }]
      expect(ws.messages(expected.size, 5)).to eq(expected)
    end
  end

  it "goes on after a worker was killed inside a callback" do
    open_ws(port, "/?id=#{unique_id('killed')}") do |doomed|
      doomed.text("kill")
      open_ws(port, "/?id=#{unique_id('after-kill')}") do |ws|
        3.times do |i|
          ws.text("still #{i}")
          expect(ws.read_message(3)).to eq([:text, "still #{i}"])
        end
      end
      doomed.text("and you")
      expect(doomed.read_message(3)).to eq([:text, "and you"])
    end
  end
end
