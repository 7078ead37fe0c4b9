# frozen_string_literal: true

# Static-file benchmark: wrk fetching one file over and over from iodine's static server
# (`-www DIR`, no app, -t 1 -w 1: the file is served from Rust), from Debian's nginx (one
# worker; sendfile, tcp_nopush, gzip_static) and from Debian's puma (-t 4:4, one process)
# running Rack::Files, all in one run so the ratios are comparable on a noisy machine. The
# server is pinned to core 0 and wrk to core 1 (taskset).
#
#   rake bench_static                                  # builds the extension, then runs this
#   ruby bench/static.rb                               # BENCH_SECONDS=5 BENCH_ROUNDS=3 by default
#   BENCH_SECONDS=2 BENCH_ROUNDS=1 ruby bench/static.rb   # a quick check
#
# Four cases: a 4 KiB text file and a 1 MiB one, each fetched plain and with
# `Accept-Encoding: gzip` (the folder holds a `.gz` twin of both; iodine and nginx send the
# twin, Rack::Files has no such thing and sends the plain file, which is what its users get).
# Each case runs BENCH_ROUNDS rounds of iodine, nginx, puma (the order reversed every other
# round, so a drift within a round favours none), wrk -t1 -c50 for BENCH_SECONDS after a 1 s
# warm-up, a fresh server on a free port per run. Each server's first run of a case checks
# the response first (status, Content-Encoding, every byte of the body).
#
# Prints every run, then per case the median req/s of each server and the median of the
# per-round ratios iodine/nginx and iodine/puma, and the MiB/s of the 1 MiB cases. A missing
# nginx or puma is skipped with a message (bin/setup installs both).

require "etc"
require "net/http"
require "rbconfig"
require "tmpdir"
require "zlib"
require_relative "support"

ROOT = File.expand_path("..", __dir__)
SECONDS = Integer(ENV.fetch("BENCH_SECONDS", "5"))
ROUNDS = Integer(ENV.fetch("BENCH_ROUNDS", "3"))
CONNECTIONS = 50
SERVER_CPU = 0
WRK_CPU = Etc.nprocessors > 1 ? 1 : 0
SO = File.join(ROOT, "lib", "iodine", "iodine.#{RbConfig::CONFIG['DLEXT'] || 'so'}")

# The files of the public folder: name => size in bytes (each gets a `.gz` twin).
FILES = { "small.txt" => 4 * 1024, "big.bin" => 1024 * 1024 }.freeze

# Name, file, whether wrk sends `Accept-Encoding: gzip`.
CASES = [
  ["4 KiB plain", "small.txt", false],
  ["4 KiB gzip", "small.txt", true],
  ["1 MiB plain", "big.bin", false],
  ["1 MiB gzip", "big.bin", true]
].freeze

# `size` bytes of printable text: lines of words from a small made-up vocabulary, so gzip
# shrinks it several times like real text (seeded: every run serves the same bytes).
def text(size, random)
  letters = ("a".."z").to_a
  words = Array.new(400) { Array.new(random.rand(2..10)) { letters[random.rand(26)] }.join }
  out = +""
  while out.bytesize < size
    out << Array.new(random.rand(5..14)) { words[random.rand(words.size)] }.join(" ") << "\n"
  end
  out.byteslice(0, size)
end

# Writes the files and their gzip twins into `dir`; returns { name => { plain:, gzip: } }.
def make_public(dir)
  random = Random.new(20_240_601)
  FILES.to_h do |name, size|
    plain = text(size, random)
    gzip = Zlib.gzip(plain, level: Zlib::BEST_COMPRESSION)
    File.binwrite(File.join(dir, name), plain)
    File.binwrite(File.join(dir, "#{name}.gz"), gzip)
    [name, { plain: plain, gzip: gzip }]
  end
end

# Why puma + Rack::Files can't run here, or nil.
def puma_missing
  return "puma is missing (apt-get install puma)" unless executable("puma")
  unless system(RbConfig.ruby, "-e", "require 'rack'; Rack::Files", out: File::NULL, err: File::NULL)
    return "rack (with Rack::Files) is missing (apt-get install ruby-rack)"
  end

  nil
end

# The servers of this run, in order: name => { cmd: ->(port) { command }, twins: sends .gz twins }.
def servers(dir, public)
  iodine = [RbConfig.ruby, "-I#{File.join(ROOT, 'lib')}", File.join(ROOT, "exe", "iodine"), "-V", "1"]
  list = {
    "iodine" => { twins: true, cmd: lambda do |port|
      [*iodine, "-p", port.to_s, "-b", "127.0.0.1", "-t", "1", "-w", "1", "-www", public]
    end }
  }
  if (nginx = executable("nginx"))
    list["nginx"] = { twins: true, cmd: ->(port) { nginx_command(nginx, dir, public, port) } }
  else
    puts "bench: skipping the nginx baseline: nginx is missing (apt-get install nginx)"
  end
  if (missing = puma_missing)
    puts "bench: skipping the puma baseline: #{missing}"
  else
    rackup = File.join(dir, "files.ru")
    File.write(rackup, "# frozen_string_literal: true\n\nrun Rack::Files.new(#{public.inspect})\n")
    # As bench/ws.rb and bench/cluster.rb run it: one process, 4 threads.
    list["puma"] = { twins: false, cmd: lambda do |port|
      [executable("puma"), "-q", "-b", "tcp://127.0.0.1:#{port}", "-t", "4:4", "-w", "0", rackup]
    end }
  end
  list
end

# GETs `url` once as wrk will (`Accept-Encoding: gzip` or no such header at all); nil if the
# answer is 200 with `encoding` as its Content-Encoding and exactly `body`, else what is wrong.
def check(url, gzip, body, encoding)
  uri = URI(url)
  # Net::HTTP decodes gzip itself unless the request names its Accept-Encoding when made.
  request = Net::HTTP::Get.new(uri, { "Accept-Encoding" => gzip ? "gzip" : "identity" })
  request.delete("Accept-Encoding") unless gzip
  response = Net::HTTP.start(uri.host, uri.port, open_timeout: 5, read_timeout: 10) { |h| h.request(request) }
  got = response.body.to_s
  sent = response["Content-Encoding"]
  return "status #{response.code}" unless response.code == "200"
  return "Content-Encoding #{sent.inspect}, expected #{encoding.inspect}" if sent != encoding
  return "a body of #{got.bytesize} bytes, expected #{body.bytesize}" if got.bytesize != body.bytesize
  return "the body differs from the file" if got != body

  nil
rescue StandardError, Timeout::Error => e
  "#{e.class}: #{e.message}"
end

# Runs wrk (pinned to WRK_CPU) on `url` for `seconds`; returns its output.
def wrk(url, gzip, seconds)
  header = gzip ? ["-H", "Accept-Encoding: gzip"] : []
  cmd = ["taskset", "-c", WRK_CPU.to_s, "wrk", "-t1", "-c#{CONNECTIONS}", "-d#{seconds}s", *header, url]
  IO.popen(cmd, err: %i[child out], &:read)
end

# wrk's Transfer/sec ("12.5MB": its units are powers of 1024) in MiB/s; NaN if absent.
def mib_per_sec(text)
  value, unit = text.to_s.match(/\A([\d.]+)([KMGT]?)B\z/)&.captures
  return Float::NAN unless value

  power = unit.empty? ? 0 : "KMGT".index(unit) + 1
  value.to_f * (1024.0**power) / (1024**2)
end

# One run: starts `server` on a free port, checks the answer when `verify` names what it must
# be ([body, encoding]), warms up, runs wrk; returns { rps:, mibs:, notes: [] } (NaN: failed).
def measure(name, server, file, gzip, dir, verify)
  log = File.join(dir, "#{name}.log")
  attempts = 0
  begin
    attempts += 1
    port = free_port
    with_pinned_server(server[:cmd].call(port), port, cpu: SERVER_CPU, env: { "RACK_ENV" => "production" },
                                                      name: name, log: log) do
      url = "http://127.0.0.1:#{port}/#{file}"
      if verify && (problem = check(url, gzip, *verify))
        return { rps: Float::NAN, mibs: Float::NAN, notes: ["wrong answer: #{problem}"] }
      end

      wrk(url, gzip, 1)
      out = wrk(url, gzip, SECONDS)
      rps = out[%r{Requests/sec:\s+([\d.]+)}, 1]
      notes = out.scan(/Non-2xx or 3xx responses: \d+|Socket errors: .*/)
      notes << "wrk failed: #{out.lines.last(3).join.strip}" unless rps
      { rps: rps ? rps.to_f : Float::NAN, mibs: mib_per_sec(out[%r{Transfer/sec:\s+(\S+)}, 1]), notes: notes }
    end
  rescue RuntimeError => e
    raise unless e.message.end_with?("did not start")

    # The extension may be being replaced by a build right now: try once more.
    warn "bench: #{name} did not start#{attempts < 2 ? ', trying again' : ''}:\n#{log_tail(log)}"
    if attempts < 2
      sleep 2
      retry
    end
    { rps: Float::NAN, mibs: Float::NAN, notes: ["did not start"] }
  end
end

# Runs every case: { case name => { server name => [run per round] } }. A server's answer is
# checked in its first run that starts; once wrong, its later runs of the case are skipped.
def run_cases(list, files, dir)
  names = list.keys
  CASES.to_h do |kase, file, gzip|
    runs = names.to_h { |n| [n, []] }
    state = {} # server name => :ok or :wrong, once its answer was checked
    ROUNDS.times do |round|
      (round.even? ? names : names.reverse).each do |name|
        server = list.fetch(name)
        encoding = gzip && server[:twins] ? "gzip" : nil
        verify = state[name] ? nil : [files.fetch(file)[encoding ? :gzip : :plain], encoding]
        run = if state[name] == :wrong
                { rps: Float::NAN, mibs: Float::NAN, notes: ["skipped: its answer was wrong"] }
              else
                measure(name, server, file, gzip, dir, verify)
              end
        if verify && run[:notes] != ["did not start"]
          state[name] = run[:notes].any? { |n| n.start_with?("wrong answer") } ? :wrong : :ok
        end
        runs[name] << run
        flag = run[:notes].empty? ? "" : "  (#{run[:notes].join('; ')})"
        checked = verify && state[name] == :ok ? "  [answer checked: #{encoding || 'plain'}]" : ""
        mibs = run[:mibs].nan? ? "-" : format("%.1f", run[:mibs])
        puts format("  %-12s round %d  %-7s %9s req/s %9s MiB/s%s%s", kase, round + 1, name, rate(run[:rps]),
                    mibs, checked, flag)
      end
    end
    [kase, runs]
  end
end

# Prints one table: a row per case in `results`, the median of `metric`
# per server, then the ratios of iodine to each other server.
def table(title, results, names, metric, unit)
  others = names - ["iodine"]
  puts
  puts format("%-22s", title) + names.map { |n| format(" %10s", n) }.join +
       others.map { |o| format("   %-24s", "iodine/#{o}") }.join
  results.each do |kase, runs|
    medians = names.map { |n| format(" %10s", rate(median(runs[n].map { |r| r[metric] }))) }
    puts format("%-22s", kase) + medians.join +
         others.map { |o| format("   %-24s", ratio(runs, "iodine", o, metric)) }.join
  end
  puts "(#{unit})"
end

$stdout.sync = true # each run shows as it ends, also through a pipe
abort "bench: wrk is missing (bin/setup installs it)" unless executable("wrk")
abort "bench: taskset is missing (apt-get install util-linux)" unless executable("taskset")
abort "bench: #{SO} is missing: run rake compile" unless File.exist?(SO)

Dir.mktmpdir("iodine-bench-static") do |dir|
  public = File.join(dir, "public")
  Dir.mkdir(public)
  files = make_public(public)
  list = servers(dir, public)
  names = list.keys
  sizes = files.map { |n, f| "#{n} #{f[:plain].bytesize} B (.gz #{f[:gzip].bytesize} B)" }.join(", ")
  puts "bench: #{names.join(', ')} on CPU #{SERVER_CPU}, wrk -t1 -c#{CONNECTIONS} on CPU #{WRK_CPU}; " \
       "#{ROUNDS} round(s) of #{SECONDS} s runs; #{sizes}"

  # Started from the temp folder: it has no config.ru, so iodine serves the folder only.
  results = Dir.chdir(dir) { run_cases(list, files, dir) }

  table("req/s (median)", results, names, :rps,
        "higher is better; a/b: the median of the per-round ratios, each round's in brackets")
  table("MiB/s (median)", results.select { |k, _| k.start_with?("1 MiB") }, names, :mibs,
        "wrk's Transfer/sec: bytes on the wire, headers included; gzip rows: the compressed twin")
  puts "puma (Rack::Files) has no gzip twins: its gzip rows send the plain file." if names.include?("puma")

  # The headline figures, for bench/RESULTS.md: req/s per case against nginx.
  others = { "nginx" => "nginx", "puma" => "puma + Rack::Files" }
  record_results("static", results.map do |kase, runs|
    result_row("static #{kase}", runs, :rps, unit: "req/s", others: others, against: names.include?("nginx") ? "nginx" : nil)
  end)
end
