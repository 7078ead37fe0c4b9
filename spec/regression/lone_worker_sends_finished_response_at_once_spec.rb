# frozen_string_literal: true

require "spec_helper"

RSpec.describe "with one worker thread, a finished response is sent without waiting for later requests" do
  before { @server = ServerProcess.new(["-t", "1", app_path("busy_fast_slow.ru")]) }
  after { @server&.stop }

  let(:port) { @server.port }

  # Sends GET `path` on its own connection; returns a thread whose value is
  # [elapsed seconds since sent, body], or [:timeout, partial] after `timeout`.
  def timed_get(path, timeout: 6)
    server_port = port
    Thread.new do
      socket = TCPSocket.new("127.0.0.1", server_port)
      sent_at = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      socket.write("GET #{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      out, ended = read_for(socket, sent_at + timeout - Process.clock_gettime(Process::CLOCK_MONOTONIC))
      socket.close
      ended ? [Process.clock_gettime(Process::CLOCK_MONOTONIC) - sent_at, out.split("\r\n\r\n", 2).last] : [:timeout, out]
    end
  end

  it "answers /fast within 1.2 s although /slow (sleep 3) was queued after it" do
    busy = timed_get("/busy")
    sleep 0.05
    fast = timed_get("/fast")
    sleep 0.05
    slow = timed_get("/slow")

    fast_elapsed, fast_body = fast.value
    expect(fast_body).to eq("fast")
    expect(fast_elapsed).to be < 1.2
    expect(busy.value.last).to eq("busy true")
    expect(slow.value.last).to eq("slow")
    expect_serving(@server, "fast")
  end
end
