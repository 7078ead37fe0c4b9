# frozen_string_literal: true

require "spec_helper"

# A request body that arrives too slowly has an overall deadline: with `-body-timeout 2
# -min-rate 1`, a body gets 2 s plus 1 s per KiB received (Apache mod_reqtimeout's rule).
# A client that sends 2,048 of 200,000 bytes (4 s of budget) and then one byte every 0.5 s is
# answered 408 (or cut) at about 4 s, instead of holding its connection (and a spill buffer)
# for as long as it keeps dripping. Before the fix only a pause of the whole keep-alive
# timeout ended it.
RSpec.describe "a slowly uploaded body is cut at its deadline" do
  before(:all) do
    @server = ServerProcess.new(["-t", "2", "-body-timeout", "2", "-min-rate", "1", app_path("counts_request_body.ru")])
  end
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  # Sends the head and `first` bytes at once, then one byte every `interval` seconds, until
  # the server answers or closes, or `limit` seconds pass since the body began.
  # Returns [seconds until cut (nil when not cut), what the server sent].
  def trickle_upload(length: 200_000, first: 2_048, interval: 0.5, limit: 8)
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write("POST /count HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n" \
                 "Content-Length: #{length}\r\n\r\n")
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    elapsed = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) - started }
    Timeout.timeout(5) { socket.write("a" * first) }
    got = +""
    sent = first
    next_byte = elapsed.call + interval
    while elapsed.call < limit
      wait = [next_byte - elapsed.call, 0.01].max
      if IO.select([socket], nil, nil, wait)
        begin
          got << socket.read_nonblock(65_536)
          return [elapsed.call, got] if got.include?("\r\n\r\n")
        rescue IO::WaitReadable
          nil
        rescue EOFError, Errno::ECONNRESET
          return [elapsed.call, got]
        end
      end
      next unless elapsed.call >= next_byte && sent < length

      begin
        socket.write_nonblock("a")
        sent += 1
      rescue IO::WaitWritable
        nil
      rescue Errno::EPIPE, Errno::ECONNRESET
        return [elapsed.call, got]
      end
      next_byte += interval
    end
    [nil, got]
  ensure
    socket&.close
  end

  it "answers 408 (or closes) at its budget when the body slows to a byte every 0.5 s" do
    cut_after, got = trickle_upload
    expect(cut_after).not_to be_nil, "the upload was still open after 8 s (server sent #{got.inspect})"
    expect(cut_after).to be_between(3.5, 6.5)
    expect(got).to be_empty.or start_with("HTTP/1.1 408")
  end

  it "keeps serving afterwards" do
    expect_serving(@server)
    res = Net::HTTP.start("127.0.0.1", port, read_timeout: 5) { |h| h.post("/count", "x" * 100_000) }
    expect(res.body).to eq("100000")
  end
end
