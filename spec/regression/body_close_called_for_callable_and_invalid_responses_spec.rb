# frozen_string_literal: true

require "spec_helper"

RSpec.describe "body.close is called exactly once for Rack 3 callable bodies and for invalid responses" do
  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("body_close_behind_lock.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  # [status, body] or :timeout when no answer came within `timeout` seconds.
  def get_within(path, timeout = 2)
    Net::HTTP.start("127.0.0.1", port, open_timeout: timeout, read_timeout: timeout) do |http|
      res = http.request(Net::HTTP::Get.new(path))
      [res.code, res.body]
    end
  rescue Net::ReadTimeout
    :timeout
  end

  # Close counts; waits (bounded) for `key` to reach `expected`, as close may run just
  # after the answer left.
  def closes(key, expected)
    deadline = Time.now + 2
    loop do
      counts = http_get(port, "/closes").body.split(",").to_h { |kv| kv.split("=") }
      count = counts.fetch(key, "0").to_i
      return count if count >= expected || Time.now > deadline

      sleep 0.05
    end
  end

  def expect_server_healthy
    expect(@server.exited?).to be false
    expect(@server.log).not_to include("recursive locking")
  end

  it "closes the body of a response with an invalid status (Rack::Lock is released each time)" do
    answers = Array.new(3) { get_within("/invalid-status") }
    expect(answers).to eq([["500", "500 Internal Server Error"]] * 3)
    expect(closes("invalid-status", 3)).to eq(3)
    expect_server_healthy
  end

  it "closes the body of a response whose headers are not a Hash (Rack::Lock is released each time)" do
    answers = Array.new(3) { get_within("/invalid-headers") }
    expect(answers).to eq([["500", "500 Internal Server Error"]] * 3)
    expect(closes("invalid-headers", 3)).to eq(3)
    expect_server_healthy
  end

  it "closes the body of an accepted upgrade, and of one whose headers are not a Hash (a 500)" do
    3.times do
      raw_request(port, "GET /upgrade-invalid-headers HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n" \
                        "Connection: close\r\n\r\n", timeout: 2).then do |reply|
        expect(reply).to start_with("HTTP/1.1 500")
      end
    end
    expect(closes("upgrade-invalid-headers", 3)).to eq(3)
    3.times do
      socket = TCPSocket.new("127.0.0.1", port)
      socket.write("GET /upgrade HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
      expect(socket.readpartial(4096)).to start_with("HTTP/1.1 200").and include("text/event-stream")
      socket.close
    end
    expect(closes("upgrade", 3)).to eq(3)
    expect_server_healthy
  end

  it "closes a Rack 3 callable body (call + close, no each) after streaming it" do
    answers = Array.new(3) { get_within("/callable") }
    expect(answers).to eq([%w[200 streamed]] * 3)
    expect(closes("callable", 3)).to eq(3)
    expect_server_healthy
  end
end
