# frozen_string_literal: true

# Soak test: `exe/iodine -t 4` on spec/support/apps/soak.ru under a steady mix of clients for
# a while, watching for errors, worker deaths and memory drift.
#
#   ruby bench/soak.rb                 # SOAK_SECONDS=300 by default
#   SOAK_SECONDS=60 ruby bench/soak.rb # (or: SOAK_SECONDS=60 rake soak)
#
# Clients (Ruby threads, one process): keep-alive hello GETs, 64 KiB responses, 1 MiB uploads,
# streamed (`each`) responses, and clients that give up at random (close mid-response, reset
# mid-response with SO_LINGER 0, leave mid-upload, close before reading); SOAK_CLIENTS sets
# how many threads of each kind, SOAK_SEED the aborting clients' choices. Every SOAK_INTERVAL
# seconds (30) it prints requests served by kind, errors by kind (refused, timeout, 5xx,
# malformed, bad_status, reset, other), the server's worker count (GET /workers), its RSS, open
# descriptors and OS threads. The RSS baseline is taken after SOAK_WARMUP seconds (30, or a
# sixth of a short run); the drift is the RSS at the end minus it. Exits non-zero when the
# server answered any 5xx or a malformed response, its worker count changed (or a worker died,
# per its log), it went away, or its RSS drifted more than SOAK_MAX_DRIFT_MIB (20) MiB.

require "socket"
require "net/http"
require "rbconfig"
require "tmpdir"
require "zlib"

ROOT = File.expand_path("..", __dir__)
SECONDS = Float(ENV.fetch("SOAK_SECONDS", "300"))
INTERVAL = Float(ENV.fetch("SOAK_INTERVAL", "30"))
WARMUP = Float(ENV.fetch("SOAK_WARMUP", [30.0, SECONDS / 6].min.to_s))
MAX_DRIFT_MIB = Float(ENV.fetch("SOAK_MAX_DRIFT_MIB", "20"))
THREADS = 4
APP = File.join(ROOT, "spec", "support", "apps", "soak.ru")
HOST = "127.0.0.1"
UPLOAD = ("0123456789abcdef" * 65_536).freeze # 1 MiB
STREAM = [16, 4096, 0.002].freeze             # chunks, chunk size, pause: 64 KiB in ~32 ms
LONG_STREAM = [256, 16_384, 0].freeze         # 4 MiB, for the clients that give up midway
# The server runs with Ruby's default GC settings (what users run). SOAK_RUBY_GC=tight sets
# 8 MB malloc limits instead, to tell GC slack from a leak when RSS moves: Ruby's limits grow
# with an app's garbage (up to 32 MiB young, 128 MiB old), and before rack.input.read(n, buf)
# reused its buffer the 1 MiB uploads made RSS swing by +-25 MiB around ~200 MiB.
TIGHT_GC = { "RUBY_GC_MALLOC_LIMIT_MAX" => "8000000", "RUBY_GC_OLDMALLOC_LIMIT" => "8000000",
             "RUBY_GC_OLDMALLOC_LIMIT_MAX" => "8000000" }.freeze
SERVER_ENV = { "RACK_ENV" => "production" }.merge(
  ENV["SOAK_RUBY_GC"] == "tight" ? TIGHT_GC.reject { |k, _| ENV.key?(k) } : {}
).freeze
# Client threads per kind; SOAK_CLIENTS="hello=3,big=1,upload=1,stream=1,abort=2" changes the mix.
CLIENTS = ENV.fetch("SOAK_CLIENTS", "hello=3,big=1,upload=1,stream=1,abort=2").split(",").to_h do |pair|
  kind, n = pair.split("=")
  abort "soak: unknown client kind #{kind.inspect}" unless %w[hello big upload stream abort].include?(kind)
  [kind.to_sym, Integer(n)]
end.freeze

def now
  Process.clock_gettime(Process::CLOCK_MONOTONIC)
end

def free_port
  s = TCPServer.new(HOST, 0)
  s.addr[1]
ensure
  s&.close
end

# Requests served and errors, by kind, shared by the client threads.
class Tally
  def initialize
    @lock = Mutex.new
    @served = Hash.new(0)
    @errors = Hash.new(0)
    @examples = {}
  end

  def served(kind)
    @lock.synchronize { @served[kind] += 1 }
  end

  def error(kind, example = nil)
    @lock.synchronize do
      @errors[kind] += 1
      @examples[kind] ||= example if example
    end
  end

  def snapshot
    @lock.synchronize { [@served.dup, @errors.dup, @examples.dup] }
  end
end

# The server under test, a child process with its output in a temporary log.
class Server
  attr_reader :pid, :port, :log_path

  def initialize
    @port = free_port
    @log_path = File.join(Dir.tmpdir, "iodine-soak-#{Process.pid}.log")
    cmd = [RbConfig.ruby, "-I#{File.join(ROOT, 'lib')}", File.join(ROOT, "exe", "iodine"),
           "-p", @port.to_s, "-b", HOST, "-t", THREADS.to_s, APP]
    reset = "trap('INT', 'SYSTEM_DEFAULT'); trap('TERM', 'SYSTEM_DEFAULT'); exec(*ARGV)"
    @pid = Process.spawn(SERVER_ENV, RbConfig.ruby, "-e", reset, *cmd,
                         chdir: ROOT, in: File::NULL, out: @log_path, err: [:child, :out])
    wait_until_listening
  end

  def wait_until_listening
    deadline = now + 20
    loop do
      TCPSocket.new(HOST, @port).close
      return
    rescue Errno::ECONNREFUSED
      abort "soak: the server exited early:\n#{log}" if exited?
      abort "soak: the server did not listen in 20 s:\n#{log}" if now > deadline
      sleep 0.05
    end
  end

  def exited?
    return true if @status

    _, @status = Process.waitpid2(@pid, Process::WNOHANG)
    !@status.nil?
  end

  def rss_mib
    File.read("/proc/#{@pid}/status")[/VmRSS:\s+(\d+)/, 1].to_i / 1024.0
  rescue Errno::ENOENT, Errno::ESRCH
    Float::NAN
  end

  # Open descriptors and OS threads of the server process (for spotting leaks).
  def fds
    Dir.children("/proc/#{@pid}/fd").size
  rescue Errno::ENOENT, Errno::ESRCH
    nil
  end

  def os_threads
    File.read("/proc/#{@pid}/status")[/Threads:\s+(\d+)/, 1].to_i
  rescue Errno::ENOENT, Errno::ESRCH
    nil
  end

  # Iodine::Base.workers_alive, or nil when the server doesn't answer.
  def workers
    Net::HTTP.start(HOST, @port, open_timeout: 5, read_timeout: 5) do |http|
      res = http.request(Net::HTTP::Get.new("/workers"))
      res.code == "200" ? Integer(res.body) : nil
    end
  rescue StandardError
    nil
  end

  def log
    File.exist?(@log_path) ? File.read(@log_path) : ""
  end

  def stop
    return if exited?

    Process.kill("TERM", @pid)
    deadline = now + 15
    sleep 0.05 until exited? || now > deadline
    unless exited?
      Process.kill("KILL", @pid)
      Process.wait(@pid)
    end
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end
end

# The error kind for an exception a client saw.
def error_kind(err)
  case err
  when Errno::ECONNREFUSED then :refused
  when Net::OpenTimeout, Net::ReadTimeout, Net::WriteTimeout, Errno::ETIMEDOUT, Timeout::Error then :timeout
  when Net::HTTPBadResponse, Net::HTTPHeaderSyntaxError, Zlib::Error then :malformed
  when Errno::ECONNRESET, Errno::EPIPE, EOFError, IOError then :reset
  else :other
  end
end

# Checks one Net::HTTP response; returns true when it is the expected one.
def check(tally, kind, res, body)
  if res.code.start_with?("5")
    tally.error(:"5xx", "#{kind}: #{res.code} #{res.body.to_s[0, 100].inspect}")
  elsif res.code != "200"
    tally.error(:bad_status, "#{kind}: #{res.code}")
  elsif res.body != body && !(body.is_a?(Integer) && res.body.bytesize == body)
    tally.error(:malformed, "#{kind}: body #{res.body.to_s[0, 60].inspect} (#{res.body.to_s.bytesize} bytes)")
  else
    tally.served(kind)
    return true
  end
  false
end

# A keep-alive Net::HTTP client doing `request` until `stop`; reconnects after an error.
def keep_alive_client(port, tally, stop, kind)
  until stop.true?
    begin
      Net::HTTP.start(HOST, port, open_timeout: 5, read_timeout: 10, write_timeout: 10) do |http|
        yield http until stop.true?
      end
    rescue StandardError => e
      tally.error(error_kind(e), "#{kind}: #{e.class}: #{e.message}")
      sleep 0.1
    end
  end
end

def run_hello(port, tally, stop)
  keep_alive_client(port, tally, stop, :hello) do |http|
    check(tally, :hello, http.request(Net::HTTP::Get.new("/")), "hello")
  end
end

def run_big(port, tally, stop)
  keep_alive_client(port, tally, stop, :"64k") do |http|
    check(tally, :"64k", http.request(Net::HTTP::Get.new("/64k")), 65_536)
  end
end

def run_upload(port, tally, stop)
  keep_alive_client(port, tally, stop, :upload) do |http|
    req = Net::HTTP::Post.new("/upload", "Content-Type" => "application/octet-stream")
    req.body = UPLOAD
    check(tally, :upload, http.request(req), UPLOAD.bytesize.to_s)
  end
end

def run_stream(port, tally, stop)
  size = STREAM[0] * STREAM[1]
  keep_alive_client(port, tally, stop, :stream) do |http|
    check(tally, :stream, http.request(Net::HTTP::Get.new("/stream?#{STREAM.join(',')}")), size)
  end
end

# Reads up to `limit` bytes (or until EOF / `timeout` seconds); returns what came.
def read_some(sock, limit, timeout)
  out = +"".b
  deadline = now + timeout
  while out.bytesize < limit
    left = deadline - now
    break if left <= 0 || !IO.select([sock], nil, nil, left)

    data = sock.read_nonblock([limit - out.bytesize, 65_536].min, exception: false)
    break if data.nil?

    out << data unless data == :wait_readable
  end
  out
end

# Writes `bytes` within `timeout` seconds; returns how many went out.
def write_some(sock, bytes, timeout)
  deadline = now + timeout
  sent = 0
  while sent < bytes.bytesize
    left = deadline - now
    break if left <= 0 || !IO.select(nil, [sock], nil, left)

    n = sock.write_nonblock(bytes.byteslice(sent, 65_536), exception: false)
    sent += n if n.is_a?(Integer)
  end
  sent
end

# Whatever part of a response a client that gave up got must look like HTTP, and not a 5xx.
def check_partial(tally, kind, got)
  return if got.empty?

  if got.bytesize >= 13 && !got.match?(%r{\AHTTP/1\.1 \d{3} }n)
    tally.error(:malformed, "#{kind}: #{got[0, 40].inspect}")
  elsif got.match?(%r{\AHTTP/1\.1 5\d\d }n)
    tally.error(:"5xx", "#{kind}: #{got[0, 40].inspect}")
  end
end

# Clients that give up: each round picks one way to leave.
def run_abort(port, tally, stop, rng)
  long = "GET /stream?#{LONG_STREAM.join(',')} HTTP/1.1\r\nHost: #{HOST}\r\n\r\n"
  until stop.true?
    way = %i[close_mid_stream rst_mid_stream leave_mid_upload rst_mid_upload close_unread][rng.rand(5)]
    kind = :"abort_#{way}"
    begin
      sock = Socket.tcp(HOST, port, connect_timeout: 5)
      case way
      when :close_mid_stream, :rst_mid_stream
        write_some(sock, long, 5)
        check_partial(tally, kind, read_some(sock, rng.rand(1..2_000_000), 5))
      when :leave_mid_upload, :rst_mid_upload
        head = "POST /upload HTTP/1.1\r\nHost: #{HOST}\r\nContent-Length: #{UPLOAD.bytesize}\r\n\r\n"
        write_some(sock, head + UPLOAD.byteslice(0, rng.rand(0...UPLOAD.bytesize)), 5)
        sleep rng.rand * 0.05
      when :close_unread
        write_some(sock, "GET /64k HTTP/1.1\r\nHost: #{HOST}\r\n\r\n", 5)
        sleep rng.rand * 0.01
      end
      sock.setsockopt(Socket::SOL_SOCKET, Socket::SO_LINGER, [1, 0].pack("ii")) if way.to_s.start_with?("rst")
      tally.served(kind)
    rescue StandardError => e
      tally.error(error_kind(e), "#{kind}: #{e.class}: #{e.message}")
      sleep 0.1
    ensure
      sock&.close
    end
  end
end

def fmt_counts(hash)
  hash.empty? ? "none" : hash.sort_by { |k, _| k.to_s }.map { |k, v| "#{k}=#{v}" }.join(" ")
end

# The server log's lines that mean trouble.
def log_trouble(log)
  log.lines.grep(/panicked|ERROR:|died|worker thread error/)
end

server = Server.new
at_exit { server.stop } # also on Ctrl-C or an error here
tally = Tally.new
stop = Struct.new(:flag) { def true? = flag }.new(false)
rng = Random.new(Integer(ENV.fetch("SOAK_SEED", Random.new_seed.to_s)))
puts format("soak: iodine -t %d on port %d (pid %d) for %ds, report every %ds, RSS baseline after %ds warm-up",
            THREADS, server.port, server.pid, SECONDS, INTERVAL, WARMUP)
puts "soak: clients #{fmt_counts(CLIENTS)}; server env #{fmt_counts(SERVER_ENV.merge(ENV.select { |k, _| k.start_with?('RUBY_GC_') }))}"
$stdout.flush

started = now
first_workers = server.workers
samples = [] # [elapsed, rss, workers]
clients = CLIENTS.flat_map do |kind, n|
  Array.new(n) do
    seed = rng.rand(1 << 62)
    Thread.new do
      Thread.current.report_on_exception = true
      case kind
      when :hello then run_hello(server.port, tally, stop)
      when :big then run_big(server.port, tally, stop)
      when :upload then run_upload(server.port, tally, stop)
      when :stream then run_stream(server.port, tally, stop)
      when :abort then run_abort(server.port, tally, stop, Random.new(seed))
      end
    end
  end
end

baseline = nil
next_report = INTERVAL
report = lambda do |elapsed|
  served, errors, = tally.snapshot
  rss = server.rss_mib
  workers = server.workers
  samples << [elapsed, rss, workers]
  puts format("[%6.1fs] served %d (%s) | errors %s | workers %s | RSS %.1f MiB%s | fds %s, threads %s",
              elapsed, served.values.sum, fmt_counts(served), fmt_counts(errors), workers.inspect, rss,
              baseline ? format(" (%+.1f)", rss - baseline) : "", server.fds.inspect, server.os_threads.inspect)
  $stdout.flush
end

loop do
  elapsed = now - started
  break if elapsed >= SECONDS || server.exited?

  if baseline.nil? && elapsed >= WARMUP
    baseline = server.rss_mib
    puts format("[%6.1fs] warm-up done: RSS baseline %.1f MiB", elapsed, baseline)
    $stdout.flush
  end
  if elapsed >= next_report
    report.call(elapsed)
    next_report += INTERVAL
  end
  sleep [0.2, SECONDS - elapsed].min
end

stop.flag = true
clients.each { |t| t.join(20) || t.kill }
elapsed = now - started
gone = server.exited?
report.call(elapsed) unless gone || (samples.last && elapsed - samples.last[0] < 1)
final_rss = gone ? Float::NAN : server.rss_mib
final_workers = gone ? nil : server.workers
trouble = log_trouble(server.log)
server.stop

served, errors, examples = tally.snapshot
drift = baseline ? final_rss - baseline : Float::NAN
worker_counts = [first_workers, *samples.map(&:last), final_workers].uniq
puts
puts format("soak: %.0fs, %d requests (%.0f/s)", elapsed, served.values.sum, served.values.sum / elapsed)
puts "  served:  #{fmt_counts(served)}"
puts "  errors:  #{fmt_counts(errors)}"
examples.each { |kind, ex| puts "    #{kind}: e.g. #{ex}" }
puts "  workers: #{worker_counts.map(&:inspect).join(' -> ')}"
puts format("  RSS:     baseline %.1f MiB, end %.1f MiB, drift %+.1f MiB (limit %.0f)", baseline || Float::NAN,
            final_rss, drift, MAX_DRIFT_MIB)
puts "  server log trouble:\n#{trouble.map { |l| "    #{l}" }.join}" unless trouble.empty?

failures = []
failures << "the server exited" if gone
failures << "#{errors[:"5xx"]} 5xx responses" if errors[:"5xx"].positive?
failures << "#{errors[:malformed]} malformed responses" if errors[:malformed].positive?
failures << "worker count changed: #{worker_counts.inspect}" if worker_counts.size != 1 || worker_counts.first != THREADS
failures << "workers died (server log)" if trouble.any? { |l| l.match?(/died|worker thread error/) }
failures << format("RSS drift %+.1f MiB over %.0f MiB", drift, MAX_DRIFT_MIB) unless drift <= MAX_DRIFT_MIB # NaN (no baseline) fails too
if failures.empty?
  File.delete(server.log_path) if File.exist?(server.log_path) && ENV["KEEP_LOGS"].nil?
  puts "soak: PASS"
else
  puts "soak: FAIL (#{failures.join('; ')}); server log: #{server.log_path}"
  exit 1
end
