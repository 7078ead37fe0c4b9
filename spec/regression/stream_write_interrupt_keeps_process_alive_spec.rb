# frozen_string_literal: true

require "spec_helper"

RSpec.describe "an interrupted Rack 3 stream.write (Timeout, Thread#kill) never aborts the server process" do
  before { @server = ServerProcess.new(["-t", "2", app_path("stream_write_interrupted.ru")]) }
  after { @server&.stop }

  let(:port) { @server.port }

  # Sends the request and then reads nothing for `stall` seconds (a slow client), so the
  # app's writes block; then closes.
  def stall_on(path, stall)
    socket = TCPSocket.new("127.0.0.1", port)
    socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_RCVBUF, 4096)
    socket.write("GET #{path} HTTP/1.1\r\nHost: x\r\n\r\n")
    sleep stall
  ensure
    socket&.close
  end

  def expect_server_healthy
    expect(@server.exited?).to be(false), "the server process ended:\n#{@server.log[0, 1500]}"
    expect(@server.log).not_to match(/very unexpected|\[BUG\]|panicked/)
    expect(http_get(port, "/").body).to eq("ok")
  end

  it "survives Timeout interrupting stream.write to a client that does not read" do
    stall_on("/timeout", 3)
    sleep 0.2
    expect_server_healthy
    expect(http_get(port, "/outcome").body).to include("timeout")
  end

  it "survives Thread#kill of a writer thread blocked in stream.write" do
    stall_on("/kill", 3)
    sleep 0.2
    expect_server_healthy
    expect(http_get(port, "/outcome").body).to include("killed")
  end
end
