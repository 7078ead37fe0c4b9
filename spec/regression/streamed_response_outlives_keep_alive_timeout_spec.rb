# frozen_string_literal: true

require "spec_helper"

RSpec.describe "a response that keeps streaming is not cut at the keep-alive timeout plus the shutdown grace" do
  # -k 1: with the fixed 8 s grace, the baseline cuts any connection at about 9 s.
  before { @server = ServerProcess.new(["-t", "2", "-k", "1", app_path("ticking_stream.ru")]) }
  after { @server&.stop }

  let(:port) { @server.port }

  it "delivers all 34 ticks (one every 0.3 s, ~10.2 s) and the terminating chunk" do
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write("GET /ticks?34,0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
    out, = read_for(socket, 15) { |so_far| so_far.end_with?("\r\n0\r\n\r\n") }
    socket.close

    expect(out).to start_with("HTTP/1.1 200")
    expect(out).to match(/^transfer-encoding: chunked\r$/i)
    expect(out.scan(/tick (\d+)/).flatten.map(&:to_i)).to eq((0...34).to_a)
    expect(out).to end_with("\r\n0\r\n\r\n")
    expect_serving(@server)
  end
end
