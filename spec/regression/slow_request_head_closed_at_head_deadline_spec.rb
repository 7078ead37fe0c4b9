# frozen_string_literal: true

require "spec_helper"

# Slowloris: a request head trickled in a byte per second is closed once the head deadline
# (`-htout 2`) passes, instead of holding the connection as long as bytes keep coming.
RSpec.describe "a slowly sent request head is closed at the head deadline" do
  before(:all) { @server = ServerProcess.new(["-t", "2", "-htout", "2", app_path("answers_ok.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  it "closes a head sent 1 byte per second within ~4 s of its first byte" do
    head = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: #{'s' * 40}\r\n\r\n"
    socket = TCPSocket.new("127.0.0.1", port)
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    elapsed = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) - started }
    closed_after = nil
    got = +""
    head.each_char.with_index do |byte, i|
      break if elapsed.call > 6

      begin
        socket.write_nonblock(byte)
      rescue Errno::EPIPE, Errno::ECONNRESET
        closed_after = elapsed.call
        break
      end
      # Watch for the server's answer or close until the next byte is due.
      data, closed = read_for(socket, i + 1 - elapsed.call)
      got << data
      closed_after = elapsed.call if closed
      break if closed_after
    end
    socket.close
    expect(closed_after).not_to be_nil, "still open after #{elapsed.call.round(1)} s (got #{got.inspect})"
    expect(closed_after).to be <= 4.0
    expect(got).not_to start_with("HTTP/1.1 200")
  end

  it "keeps serving afterwards" do
    expect_serving(@server)
  end
end
