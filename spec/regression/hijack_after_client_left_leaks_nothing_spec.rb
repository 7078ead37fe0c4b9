# frozen_string_literal: true

require "spec_helper"

RSpec.describe "rack.hijack called after the client left fails cleanly and leaks no descriptors" do
  before { @server = ServerProcess.new(["-t", "10", app_path("hijack_after_delay.ru")]) }
  after { @server&.stop }

  let(:port) { @server.port }

  # The app's tally; a poll answered with anything else got a hijacked response.
  def hijack_counts
    body = http_get(port, "/hijacks").body
    expect(body).to match(/\A(\w+=\d+)?(,\w+=\d+)*\z/)
    body.split(",").to_h { |kv| k, v = kv.split("="); [k, v.to_i] }
  end

  def wait_for_attempts(total, timeout)
    deadline = Time.now + timeout
    loop do
      counts = hijack_counts
      return counts if counts.values.sum >= total || Time.now > deadline

      sleep 0.05
    end
  end

  it "gives an IOError (or the dead socket) for 50 gone clients and keeps the descriptor count flat" do
    expect(http_get(port, "/").body).to eq("ok")
    before_fds = open_fds(@server.pid)
    gone_ports = []
    leaked = []
    5.times do |batch|
      clients = Array.new(10) do
        c = TCPSocket.new("127.0.0.1", port)
        c.write("GET /hijack?0.2 HTTP/1.1\r\nHost: x\r\n\r\n")
        gone_ports << c.local_address.ip_port
        c
      end
      sleep 0.05
      clients.each(&:close) # gone before the app calls rack.hijack
      sleep 0.05
      # Idle connections opened meanwhile (likely on the descriptor numbers just freed)
      # must not be what rack.hijack hands out.
      bystanders = Array.new(3) { TCPSocket.new("127.0.0.1", port) }
      wait_for_attempts((batch + 1) * 10, 3)
      bystanders.each do |b|
        got = IO.select([b], nil, nil, 0.01) ? (b.read_nonblock(4096) rescue "") : ""
        leaked << got unless got.empty?
        b.close
      end
    end
    expect(leaked).to be_empty
    counts = wait_for_attempts(50, 3)
    expect(counts.values.sum).to eq(50)
    # A gone client means rack.hijack raised IOError or gave the app that client's own socket;
    # it is never "handed something else that worked".
    expect(@server.log.scan(/hijack-raised=|hijacked-peer-port=/).size).to eq(50)
    hijacked = @server.log.scan(/hijacked-peer-port=(\d+)/).flatten.map(&:to_i)
    expect(hijacked - gone_ports).to be_empty
    sleep 0.2
    expect(open_fds(@server.pid)).to be <= before_fds + 3
    expect_serving(@server)
  end
end
