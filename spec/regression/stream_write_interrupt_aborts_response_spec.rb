# frozen_string_literal: true

require "spec_helper"

RSpec.describe "a body write cut by an interrupt (Timeout) aborts the response instead of finishing it cleanly" do
  before { @server = ServerProcess.new(["-t", "2", app_path("stream_write_interrupted.ru")]) }
  after { @server&.stop }

  let(:port) { @server.port }

  # Sends the request, reads nothing for `stall` seconds (the app's writes block and its
  # Timeout fires meanwhile), then reads until the connection ends, the chunked terminator
  # shows up, or `deadline` seconds pass. Returns [bytes, connection_ended].
  def stall_then_read(path, stall: 2, deadline: 4)
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write("GET #{path} HTTP/1.1\r\nHost: x\r\n\r\n")
    sleep stall
    read_for(socket, deadline, chunk: 1 << 20) { |so_far| so_far.end_with?("\r\n0\r\n\r\n") }
  ensure
    socket&.close
  end

  def expect_server_healthy
    expect(@server.exited?).to be(false), "the server process ended:\n#{@server.log[0, 1500]}"
    expect(http_get(port, "/").body).to eq("ok")
  end

  it "cuts a Rack 3 streaming response whose stream.write was interrupted (the app then closes the stream)" do
    out, ended = stall_then_read("/timeout")
    expect(out).to start_with("HTTP/1.1 200")
    expect(out).not_to end_with("\r\n0\r\n\r\n")
    expect(ended).to be true
    expect_server_healthy
  end

  it "cuts a streamed each-body response whose each was interrupted by Timeout while blocked writing" do
    out, ended = stall_then_read("/each-timeout")
    expect(out).to start_with("HTTP/1.1 200")
    expect(out).not_to end_with("\r\n0\r\n\r\n")
    expect(ended).to be true
    expect_server_healthy
    expect(http_get(port, "/outcome").body).to include("each timeout")
  end
end
