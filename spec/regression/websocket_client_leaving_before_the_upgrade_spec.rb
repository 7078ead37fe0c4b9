# frozen_string_literal: true

require "spec_helper"
require_relative "../support/realtime"

# A client that leaves while the app is still deciding on its upgrade: the handler the app
# set must hear the end (on_close, without on_open), and nothing of it may linger.
RSpec.describe "a WebSocket client leaving before its upgrade is answered" do
  include RealtimeHelpers

  it "gets its handler's on_close without on_open, and the server keeps serving" do
    server = ServerProcess.new(["-t", "2", app_path("ws_echo.ru")])
    id = unique_id("left")
    socket = TCPSocket.new("127.0.0.1", server.port)
    socket.write(WsFrames.upgrade_request("/slow?id=#{id}", port: server.port, key: SecureRandom.base64(16)))
    sleep 0.1 # the app is sleeping in call
    socket.close
    log = wait_for_events(server.port, id, seconds: 5) { |l| l.include?("close") }
    expect(log).to eq(["call :websocket", "close"])
    expect(http_get(server.port, "/count").body).to eq("0")
    expect_serving(server)
  ensure
    server&.stop
  end
end
