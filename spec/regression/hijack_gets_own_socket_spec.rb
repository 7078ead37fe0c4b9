# frozen_string_literal: true

require "spec_helper"

RSpec.describe "rack.hijack never hands the app another client's socket after its own client left" do
  before { @server = ServerProcess.new(["-t", "2", app_path("hijack_after_delay.ru")]) }
  after { @server&.stop }

  let(:port) { @server.port }

  it "does not write A's hijacked response to clients that connected after A closed" do
    a = TCPSocket.new("127.0.0.1", port)
    a.write("GET /hijack?1 HTTP/1.1\r\nHost: x\r\n\r\n")
    sleep 0.3
    a.close # A leaves while the app still sleeps before calling rack.hijack
    sleep 0.05
    # B (a few of them, so one surely gets the descriptor number A had) sends nothing:
    # any bytes a B receives were meant for someone else.
    bs = Array.new(4) { TCPSocket.new("127.0.0.1", port) }
    b_ports = bs.map { |b| b.local_address.ip_port }
    received = bs.map { |b| Thread.new { read_for(b, 2.0).first } }.map(&:value)
    bs.each(&:close)

    expect(received).to all(satisfy { |r| !r.include?("hijack!") })
    hijacked_ports = @server.log.scan(/hijacked-peer-port=(\d+)/).flatten.map(&:to_i)
    expect(hijacked_ports & b_ports).to be_empty
    expect_serving(@server)
  end
end
