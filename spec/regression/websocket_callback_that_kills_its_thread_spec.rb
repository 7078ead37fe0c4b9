# frozen_string_literal: true

require "spec_helper"
require_relative "../support/realtime"

# A WebSocket callback that ends its own worker thread (`Thread.current.kill`: a jump, not an
# exception) must cost neither the connection's later callbacks nor the pool: the rest of the
# connection's events run on another worker, in order, and the dead worker is replaced.
RSpec.describe "a WebSocket callback that kills its worker thread" do
  include RealtimeHelpers

  it "keeps the connection's later messages in order and the server serving" do
    server = ServerProcess.new(["-t", "2", app_path("ws_echo.ru")])
    id = unique_id("kill")
    open_ws(server.port, "/?id=#{id}") do |ws|
      ws.text("kill")
      %w[one two three].each { |word| ws.text(word) }
      expect(ws.messages(3)).to eq(%w[one two three])
    end
    log = wait_for_events(server.port, id) { |l| l.include?("close") }
    expect(log).to eq(["call :websocket", "open", "message UTF-8 4", "message UTF-8 3", "message UTF-8 3",
                       "message UTF-8 5", "close"])
    expect(eventually { server.log.include?("died") }).to be(true), server.log
    expect_serving(server)
  ensure
    server&.stop
  end
end
