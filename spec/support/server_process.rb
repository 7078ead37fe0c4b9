# frozen_string_literal: true

# Starts `exe/iodine` (or any Ruby script) as a child process with SIGINT at its default
# disposition (a background job inherits an ignored SIGINT otherwise), waits for its port and
# stops it, keeping its stderr for assertions.
class ServerProcess
  EXE = File.join(ROOT, "exe", "iodine")
  APPS = File.join(ROOT, "spec", "support", "apps")
  BOOT_TIMEOUT = 20

  attr_reader :port, :pid, :log_path

  def self.free_port
    server = TCPServer.new("127.0.0.1", 0)
    server.addr[1]
  ensure
    server&.close
  end

  # args: iodine CLI arguments (the app file among them); env: extra environment. Unless
  # `bind: false`, `-p PORT -b 127.0.0.1` are added in front.
  def initialize(args, env: {}, chdir: ROOT, port: ServerProcess.free_port, wait_for: :port, script: nil, bind: true)
    @port = port
    args = ["-p", port.to_s, "-b", "127.0.0.1", *args] if bind && !script
    @log_path = File.join(Dir.tmpdir, "iodine-spec-#{Process.pid}-#{port}.log")
    command = script ? [RbConfig.ruby, "-I#{ROOT}/lib", *script] : [RbConfig.ruby, "-I#{ROOT}/lib", EXE, *args]
    reset = "trap('INT', 'SYSTEM_DEFAULT'); trap('TERM', 'SYSTEM_DEFAULT'); exec(*ARGV)"
    @pid = Process.spawn(env, RbConfig.ruby, "-e", reset, *command,
                         chdir: chdir, in: File::NULL, out: @log_path, err: [:child, :out])
    wait_until_listening if wait_for == :port
  end

  def wait_until_listening
    deadline = Time.now + BOOT_TIMEOUT
    loop do
      begin
        TCPSocket.new("127.0.0.1", @port).close
        return self
      rescue Errno::ECONNREFUSED, Errno::ECONNRESET
        raise "server exited early:\n#{log}" if exited?
        raise "server did not listen on #{@port} in #{BOOT_TIMEOUT}s:\n#{log}" if Time.now > deadline

        sleep 0.05
      end
    end
  end

  def log
    File.exist?(@log_path) ? File.read(@log_path) : ""
  end

  # The log once it includes `pattern` (a String or Regexp), or as it is after `timeout`
  # seconds: the server writes its log from a thread of its own, so a line may come just
  # after the answer that caused it.
  def log_with(pattern, timeout = 5)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      text = log
      return text if pattern.is_a?(Regexp) ? text.match?(pattern) : text.include?(pattern)
      return text if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
  end

  def exited?
    return true if @status

    _, status = Process.waitpid2(@pid, Process::WNOHANG)
    @status = status if status
    !@status.nil?
  end

  # Waits for the process to end; returns its Process::Status (nil on timeout).
  def wait(timeout = 15)
    deadline = Time.now + timeout
    until exited?
      return nil if Time.now > deadline

      sleep 0.05
    end
    @status
  end

  def signal(sig)
    Process.kill(sig, @pid) unless exited?
  end

  # Stops the server (TERM, then KILL after a while); returns the exit status.
  def stop(sig = "TERM")
    signal(sig)
    status = wait(15)
    unless status
      signal("KILL")
      status = wait(5)
    end
    File.delete(@log_path) if File.exist?(@log_path) && ENV["KEEP_LOGS"].nil?
    status
  end
end

# Helpers for specs that talk HTTP to a ServerProcess.
module ServerHelpers
  def http_get(port, path, headers = {})
    Net::HTTP.start("127.0.0.1", port, read_timeout: 10, open_timeout: 5) do |http|
      http.request(Net::HTTP::Get.new(path, headers))
    end
  end

  # Sends raw bytes, reads until the server closes the connection (or `timeout`).
  def raw_request(port, bytes, timeout: 10)
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write(bytes)
    out = +""
    Timeout.timeout(timeout) do
      loop do
        chunk = socket.readpartial(65_536)
        out << chunk
      rescue EOFError, Errno::ECONNRESET
        break
      end
    end
    out
  ensure
    socket&.close
  end

  def app_path(name)
    File.join(ServerProcess::APPS, name)
  end

  # Reads `io` until EOF/reset, `seconds` or a true block (given the bytes so far); returns [bytes, closed_by_peer].
  def read_for(io, seconds, chunk: 65_536)
    out = +""
    stop_at = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
    loop do
      return [out, false] if block_given? && yield(out)

      left = stop_at - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      return [out, false] if left <= 0
      next unless IO.select([io], nil, nil, left)

      out << io.read_nonblock(chunk)
    rescue IO::WaitReadable
      next
    rescue EOFError, Errno::ECONNRESET
      return [out, true]
    end
  end

  # How many descriptors process `pid` has open.
  def open_fds(pid)
    Dir.children("/proc/#{pid}/fd").size
  end

  # Expects `server` still running and answering GET / with `body`.
  def expect_serving(server, body = "ok")
    expect(server.exited?).to be false
    expect(http_get(server.port, "/").body).to eq(body)
  end

  # `clients` threads send `requests` keep-alive GET / each, joined within `seconds`; returns [codes, failures].
  def concurrent_gets(port, clients:, requests:, seconds: 20)
    codes = Queue.new
    failures = Queue.new
    threads = Array.new(clients) do
      Thread.new do
        Net::HTTP.start("127.0.0.1", port, open_timeout: 5, read_timeout: 10) do |http|
          requests.times { codes << http.request(Net::HTTP::Get.new("/")).code }
        end
      rescue StandardError => e
        failures << "#{e.class}: #{e.message}"
      end
    end
    deadline = Time.now + seconds
    threads.each { |t| t.join([deadline - Time.now, 0].max) }
    threads.each(&:kill)
    [Array.new(codes.size) { codes.pop }, Array.new(failures.size) { failures.pop }]
  end
end
