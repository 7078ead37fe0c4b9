# frozen_string_literal: true

require "spec_helper"

# With `-v` every response is logged; the log goes to stderr, which may be a pipe nobody
# reads for a while. That must never stall the IO threads: requests keep being answered and
# the lines come out once the pipe is read. A line is written once the response was sent,
# with the bytes actually sent, so a response cut short by a leaving client is not logged as
# complete.
RSpec.describe "the access log never blocks the IO threads" do
  reset = "trap('INT', 'SYSTEM_DEFAULT'); trap('TERM', 'SYSTEM_DEFAULT'); exec(*ARGV)"

  before(:all) do
    @port = ServerProcess.free_port
    @log_reader, writer = IO.pipe
    @pid = Process.spawn(RbConfig.ruby, "-e", reset, RbConfig.ruby, "-I#{ROOT}/lib", ServerProcess::EXE,
                         "-p", @port.to_s, "-b", "127.0.0.1", "-t", "4", "-v", app_path("trickles_each_body.ru"),
                         chdir: ROOT, in: File::NULL, out: writer, err: writer)
    writer.close
    @read_so_far = +""
    deadline = Time.now + ServerProcess::BOOT_TIMEOUT
    begin
      TCPSocket.new("127.0.0.1", @port).close
    rescue Errno::ECONNREFUSED
      raise "server did not listen on #{@port}" if Time.now > deadline || Process.waitpid(@pid, Process::WNOHANG)

      sleep 0.05
      retry
    end
  end

  after(:all) do
    if @pid
      begin
        Process.kill("TERM", @pid)
        # Keep the pipe flowing so the shutdown isn't held by a full pipe.
        deadline = Time.now + 15
        drain_log(0.1) until Process.waitpid(@pid, Process::WNOHANG) || Time.now > deadline
        unless Process.waitpid(@pid, Process::WNOHANG)
          Process.kill("KILL", @pid)
          Process.waitpid(@pid)
        end
      rescue Errno::ESRCH, Errno::ECHILD
        nil
      end
    end
    @log_reader&.close
  end

  # Reads what the server wrote to the pipe for `seconds` (bounded), keeping all of it.
  def drain_log(seconds)
    @read_so_far << read_for(@log_reader, seconds, chunk: 1 << 20).first
  end

  # Drains until `block` is true of the log so far, or `seconds` pass.
  def drain_until(seconds)
    deadline = Time.now + seconds
    drain_log(0.1) until yield(@read_so_far) || Time.now > deadline
    @read_so_far
  end

  access_line = %r{\A127\.0\.0\.1 - - \[[^\]]+\] "GET / HTTP/1\.1" 200 2b \d+ms\n\z}

  it "answers 3,000 keep-alive requests within 20 s while nobody reads its stderr pipe, then logs them all" do
    answered, failed = concurrent_gets(@port, clients: 10, requests: 300, seconds: 20)

    expect(failed).to eq([])
    expect(answered.size).to eq(3000)
    expect(answered.uniq).to eq(["200"])

    log = drain_until(5) { |text| text.scan('"GET / HTTP/1.1"').size >= 3000 }
    lines = log.lines.select { |l| l.include?('"GET / HTTP/1.1"') }
    expect(lines.reject { |l| l.match?(access_line) }.first(3)).to eq([])
    expect(lines.size).to eq(3000)
  end

  it "logs a streamed response cut by the client leaving with the bytes actually sent, not as complete" do
    socket = TCPSocket.new("127.0.0.1", @port)
    socket.write("GET /trickle HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    got, = read_for(socket, 0.3)
    expect(got).to start_with("HTTP/1.1 200")
    socket.setsockopt(Socket::SOL_SOCKET, Socket::SO_LINGER, [1, 0].pack("ii"))
    socket.close

    log = drain_until(5) { |text| text.include?('"GET /trickle HTTP/1.1"') }
    line = log.lines.find { |l| l.include?('"GET /trickle HTTP/1.1"') }
    expect(line).not_to be_nil, "no access-log line for the cut response; log tail:\n#{log[-2000..] || log}"
    expect(line).to match(%r{\A127\.0\.0\.1 - - \[[^\]]+\] "GET /trickle HTTP/1\.1" 200 \d+b \d+ms})
    sent = line[/ 200 (\d+)b /, 1].to_i
    expect(line.include?("(cut)") || sent < 40_000).to be(true), "logged as a complete response: #{line.inspect}"
  end
end
