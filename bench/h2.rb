# frozen_string_literal: true

# HTTP/2 benchmark: the server pinned to one core, the load tool (h2load, wrk) or the idle
# client to the other (taskset), a fresh server on a free port for every run. Three parts:
#
# - hello: iodine -t 1 serving examples/hello.ru, over h2c with prior knowledge (h2load -c10
#   -m20: 10 connections with 20 streams each) against the same server over HTTP/1.1 (wrk
#   -c100); goal: h2c req/s >= 1.0x HTTP/1.1's;
# - static: a 4 KiB file over h2 with TLS (h2load -c10 -m20 https://, h2 by ALPN) from
#   iodine -www (-t 1 -w 1, served from Rust) against Debian's nginx (one worker, `http2` as
#   its version spells it), both with the same self-signed ECDSA P-256 certificate; goal:
#   iodine req/s >= 1.0x nginx's;
# - idle: iodine's resident memory before and after BENCH_H2_IDLE h2c connections that each
#   made one request (GET /, the whole answer read) and then send nothing, MiB per 1,000, next
#   to the same number of HTTP/1.1 keep-alive connections to the same kind of server.
#
# The paired parts run BENCH_PAIRS pairs interleaved (A B, B A, …). Each run checks the
# answer first over h2 (h2load -n1: negotiated protocol, status, body size), warms up for 1 s,
# then measures for BENCH_SECONDS; it prints req/s, the server's CPU time per request (utime +
# stime of every thread and child, from /proc at the edges of the measured window: what still
# compares the servers when the load tool fills its core) and the load tool's share of its
# core. Then the medians and the median of the per-pair ratios, each pair's in brackets.
#
#   rake bench_h2
#   ruby bench/h2.rb            # BENCH_PAIRS=5 BENCH_SECONDS=5 BENCH_H2_IDLE=10000
#   BENCH_SECONDS=2 BENCH_PAIRS=1 BENCH_H2_IDLE=1000 ruby bench/h2.rb   # a quick check
#   BENCH_CASES=static ruby bench/h2.rb   # only the parts whose name contains it (hello, static, idle)
#
# A missing nginx skips the static part (bin/setup installs it); a server that does not start
# is warned about (with its log) and its runs count as failed.

require "etc"
require "rbconfig"
require "tmpdir"
require_relative "support"

ROOT = File.expand_path("..", __dir__)
PAIRS = Integer(ENV.fetch("BENCH_PAIRS", "5"))
SECONDS = Integer(ENV.fetch("BENCH_SECONDS", "5"))
REQUESTED_IDLE = Integer(ENV.fetch("BENCH_H2_IDLE", "10000"))
# Every server and the idle client inherit the hard open-files limit, so each can hold about
# that many connections.
Process.setrlimit(:NOFILE, Process.getrlimit(:NOFILE)[1])
IDLE = [REQUESTED_IDLE, Process.getrlimit(:NOFILE)[1] - 200].min
ONLY = ENV["BENCH_CASES"]
SERVER_CPU = 0
LOAD_CPU = Etc.nprocessors > 1 ? 1 : 0
APP = File.join(ROOT, "examples", "hello.ru")
IODINE = [RbConfig.ruby, "-I#{File.join(ROOT, 'lib')}", File.join(ROOT, "exe", "iodine"), "-V", "1"].freeze
H2_CLIENTS = 10
H2_STREAMS = 20
H1_CONNECTIONS = 100
FILE_SIZE = 4 * 1024
GOAL_HELLO = 1.0  # h2c / HTTP/1.1 req/s, iodine's hello, at least
GOAL_STATIC = 1.0 # iodine / nginx req/s, 4 KiB over h2 + TLS, at least
# The headline figures each part adds, recorded at the end for bench/RESULTS.md.
ROWS = []

# Whether the part `name` runs (BENCH_CASES narrows them).
def wanted?(name)
  !ONLY || name.include?(ONLY)
end

# Starts `cmd` (listening on `port`) pinned to SERVER_CPU and yields its pid once it accepts;
# nil (with a warning and the end of its log) if it did not start.
def with_server(name, cmd, port, tmp, &block)
  log = File.join(tmp, "#{name}-#{port}.log")
  with_pinned_server(cmd, port, cpu: SERVER_CPU, env: { "RACK_ENV" => "production" }, name: name, log: log, &block)
rescue RuntimeError => e
  raise unless e.message.end_with?("did not start")

  warn "  #{e.message}:\n#{log_tail(log)}"
  nil
ensure
  File.delete(log) if log && File.exist?(log)
end

# h2load's command: H2_CLIENTS connections of H2_STREAMS streams for `seconds`, or for
# `requests` requests on one connection.
def h2load(url, seconds: nil, requests: nil)
  amount = requests ? ["-n#{requests}", "-c1", "-m1"] : ["-c#{H2_CLIENTS}", "-m#{H2_STREAMS}", "-D", seconds.to_s]
  ["h2load", "-t1", *amount, url]
end

# wrk's command: H1_CONNECTIONS keep-alive HTTP/1.1 connections for `seconds`.
def wrk(url, seconds)
  ["wrk", "-t1", "-c#{H1_CONNECTIONS}", "-d#{seconds}s", url]
end

# What h2load's report says: { requests: (succeeded), rate:, data: (DATA bytes), tls:,
# note: } (rate NaN when no request succeeded or `protocol` was not the one negotiated).
def parse_h2load(out, protocol)
  notes = []
  got = out[/^Application protocol: (\S+)/, 1]
  notes << "negotiated #{got || 'no protocol'}, not #{protocol}" if got != protocol
  counts = out.match(/^requests: .* (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/)
  ok, failed, errored, timeout = counts ? counts.captures.map(&:to_i) : [0, 0, 0, 0]
  notes << "#{failed} failed, #{errored} errored, #{timeout} timed out" if failed + errored + timeout > 0
  others = out.match(/status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/)&.captures&.map(&:to_i)&.sum.to_i
  notes << "#{others} answers were not 2xx" if others.positive?
  rate = out[%r{^finished in [\d.]+\w+, ([\d.]+) req/s}, 1]
  notes << "h2load failed: #{out.lines.last(2).join.strip}" unless rate && counts
  good = rate && ok.positive? && got == protocol
  tls = ["TLS Protocol", "Cipher", "Server Temp Key"].filter_map { |k| out[/^#{k}: (.+)$/, 1] }.join(", ")
  { requests: ok, rate: good ? rate.to_f : Float::NAN, data: out[/\((\d+)\) data/, 1].to_i, tls: tls,
    note: notes.empty? ? nil : notes.join("; ") }
end

# What wrk's report says: { requests:, rate:, note: } (rate NaN when nothing was answered).
def parse_wrk(out)
  requests = out[/(\d+) requests in/, 1].to_i
  notes = [out[/Socket errors: .*/], out[/Non-2xx or 3xx responses: \d+/]].compact
  notes << "wrk failed: #{out.lines.last(2).join.strip}" if requests.zero?
  rate = requests.positive? ? out[%r{Requests/sec:\s+([\d.]+)}, 1].to_f : Float::NAN
  { requests: requests, rate: rate, note: notes.empty? ? nil : notes.join("; ") }
end

# One h2 request to `url` (h2load -n1): nil if `protocol` was negotiated and a 2xx carried
# `size` body bytes, else what is wrong; the TLS description as the second value.
def check(url, protocol, size)
  out, = run_pinned(h2load(url, requests: 1), cpu: LOAD_CPU)
  got = parse_h2load(out, protocol)
  return [got[:note], got[:tls]] if got[:note]
  return ["a body of #{got[:data]} bytes, expected #{size}", got[:tls]] if got[:data] != size

  [nil, got[:tls]]
end

# One run on the server `name` started by `cmd` (listening on `port`): checks the answer at
# `url` over h2 when `expect` is [protocol, body size], warms up with `tool` (->(seconds) {
# command }) for 1 s, then runs it for SECONDS and reads its output with `parse`; returns
# { rate:, cpu_us:, load_cpu:, note:, tls: } (NaNs when it failed).
def measure(name, cmd, port, url, tool, parse, expect, tmp)
  run = { rate: Float::NAN, cpu_us: Float::NAN, load_cpu: Float::NAN, note: "did not start", tls: nil }
  with_server(name, cmd, port, tmp) do |pid|
    if expect
      problem, run[:tls] = check(url, *expect)
      if problem
        run[:note] = "wrong answer: #{problem}"
        next
      end
    end
    run_pinned(tool.call(1), cpu: LOAD_CPU) # warm up
    cpu_before = cpu_seconds([pid])
    out, load_cpu = run_pinned(tool.call(SECONDS), cpu: LOAD_CPU)
    cpu = cpu_seconds([pid]) - cpu_before
    if Process.waitpid(pid, Process::WNOHANG)
      run[:note] = "the server exited during the run (#{$?.inspect})"
      next
    end
    got = parse.call(out)
    run.merge!(rate: got[:rate], load_cpu: load_cpu / SECONDS, note: got[:note])
    run[:cpu_us] = cpu / got[:requests] * 1e6 if got[:requests].positive? && !got[:rate].nan?
  end
  run
end

# Runs PAIRS interleaved pairs of the two `sides` ({ label => ->(tmp) { run } }), printing each
# run under `title`; returns { label => [run per pair] }.
def pairs(title, sides, tmp)
  labels = sides.keys
  runs = labels.to_h { |l| [l, []] }
  PAIRS.times do |i|
    # Alternate which goes first (A B, B A, …), so a drift within a pair favours neither.
    (i.even? ? labels : labels.reverse).each do |label|
      run = sides.fetch(label).call(tmp)
      runs[label] << run
      puts format("  %-7s pair %d  %-9s %10s req/s %8.1f us CPU/req  load tool %3.0f%% CPU%s", title, i + 1, label,
                  rate(run[:rate]), run[:cpu_us], run[:load_cpu] * 100, run[:note] ? "  (#{run[:note]})" : "")
    end
  end
  runs
end

# Prints the medians of `runs` and the per-pair ratios a/b of req/s and CPU per request;
# returns the median req/s ratio.
def summary(runs, a, b, goal)
  runs.each do |label, list|
    med = ->(metric) { median(list.map { |r| r[metric] }) }
    puts format("  %-9s %10s req/s %8.1f us CPU/req  load tool %3.0f%% CPU  (medians)", label, rate(med.(:rate)),
                med.(:cpu_us), med.(:load_cpu) * 100)
  end
  value = median(pair_ratios_of(runs, a, b, :rate).reject(&:infinite?))
  puts format("  %s / %s  req/s %-26s CPU/req %-26s (goal: req/s >= %.2fx: %s)", a, b, ratio(runs, a, b, :rate),
              ratio(runs, a, b, :cpu_us), goal, verdict(value, value >= goal))
  if runs.values.flatten.map { |r| r[:load_cpu] }.reject(&:nan?).max.to_f >= 0.9
    puts "  (a load tool used its whole core: req/s may be its limit; CPU/req compares the servers)"
  end
  value
end

# "CPU per request 0.64× `whose`" (the median of the per-pair ratios a/b), or nil.
def cpu_note(runs, a, b, whose)
  value = pair_note(runs, a, b, :cpu_us)
  value && "CPU per request #{value} #{whose}"
end

# "met" / "NOT met" / "not measured" for `value` against a goal.
def verdict(value, ok)
  return "not measured" if value.nil? || value.nan? || value.infinite?

  ok ? "met" : "NOT met"
end

# The hello part: iodine over h2c (h2load) against iodine over HTTP/1.1 (wrk).
def hello_part(tmp)
  puts "hello: iodine -t 1 serving examples/hello.ru; h2c (prior knowledge) h2load -t1 -c#{H2_CLIENTS} " \
       "-m#{H2_STREAMS} against HTTP/1.1 wrk -t1 -c#{H1_CONNECTIONS}; #{PAIRS} pair(s) of #{SECONDS} s"
  # label => the load tool's command, its parser, what the h2 check expects (none for HTTP/1.1).
  loads = {
    "h2c" => [->(url, s) { h2load(url, seconds: s) }, ->(out) { parse_h2load(out, "h2c") },
              ["h2c", "Hello World!".bytesize]],
    "HTTP/1.1" => [->(url, s) { wrk(url, s) }, ->(out) { parse_wrk(out) }, nil]
  }
  sides = loads.transform_values do |(tool, parse, expect)|
    lambda do |dir|
      port = free_port
      url = "http://127.0.0.1:#{port}/"
      cmd = [*IODINE, "-t", "1", "-p", port.to_s, "-b", "127.0.0.1", APP]
      measure("iodine", cmd, port, url, ->(s) { tool.call(url, s) }, parse, expect, dir)
    end
  end
  runs = pairs("hello", sides, tmp)
  ROWS << result_row("HTTP/2 hello h2c (vs HTTP/1.1)", runs, :rate, unit: "req/s", ours: "h2c",
                     others: { "HTTP/1.1" => "iodine HTTP/1.1" }, goal: format("≥ %.2f× HTTP/1.1", GOAL_HELLO),
                     note: cpu_note(runs, "h2c", "HTTP/1.1", "HTTP/1.1's"))
  puts
  puts "hello"
  summary(runs, "h2c", "HTTP/1.1", GOAL_HELLO)
end

# The static part: a 4 KiB file over h2 + TLS from iodine -www and from nginx, `tls` the
# [cert, key] both use.
def static_part(tmp, nginx, tls)
  public = File.join(tmp, "public")
  Dir.mkdir(public)
  # Printable bytes, and no `.gz` twin: h2load asks for gzip, and both servers must send these.
  File.write(File.join(public, "small.txt"), [Random.new(4096).bytes(FILE_SIZE * 3 / 4)].pack("m0"))
  puts "static: a #{FILE_SIZE}-byte file over h2 + TLS (ALPN), h2load -t1 -c#{H2_CLIENTS} -m#{H2_STREAMS}; iodine " \
       "-www -t 1 -w 1 against nginx #{nginx_version(nginx).join('.')} (one worker), one ECDSA P-256 certificate; " \
       "#{PAIRS} pair(s) of #{SECONDS} s"
  commands = {
    "iodine" => lambda do |port|
      [*IODINE, "-t", "1", "-w", "1", "-p", port.to_s, "-b", "127.0.0.1", "-www", public, "-tls-cert", tls[0],
       "-tls-key", tls[1]]
    end,
    "nginx" => ->(port) { nginx_command(nginx, tmp, public, port, tls: tls) }
  }
  described = {}
  sides = commands.to_h do |name, make|
    [name, lambda do |dir|
      port = free_port
      url = "https://127.0.0.1:#{port}/small.txt"
      run = measure(name, make.call(port), port, url, ->(s) { h2load(url, seconds: s) },
                    ->(out) { parse_h2load(out, "h2") }, ["h2", FILE_SIZE], dir)
      # What each server negotiated with h2load (protocol, cipher, key exchange), once.
      if run[:tls] && !described[name]
        described[name] = true
        puts "  #{name}: #{run[:tls]}"
      end
      run
    end]
  end
  # Started from the temp folder: it has no config.ru, so iodine serves the folder only.
  runs = Dir.chdir(tmp) { pairs("static", sides, tmp) }
  ROWS << result_row("HTTP/2 static 4 KiB over TLS", runs, :rate, unit: "req/s", others: { "nginx" => "nginx" },
                     goal: format("≥ %.2f× nginx", GOAL_STATIC), note: cpu_note(runs, "iodine", "nginx", "nginx's"))
  puts
  puts "static 4 KiB over h2 + TLS"
  summary(runs, "iodine", "nginx", GOAL_STATIC)
end

# The idle part: iodine's memory for IDLE idle h2c connections and as many HTTP/1.1 ones.
def idle_part(tmp)
  puts "Idle connections (#{rate(IDLE.to_f)} each, after one GET /, opened by a Ruby client on CPU #{LOAD_CPU}; " \
       "iodine -t 1's RSS before -> after)"
  memory = [%w[h2c h2c], %w[HTTP/1.1 get]].to_h do |label, mode|
    port = free_port
    cmd = [*IODINE, "-t", "1", "-p", port.to_s, "-b", "127.0.0.1", APP]
    m = with_server("iodine", cmd, port, tmp) do |pid|
      idle_growth(pid, port, IDLE, mode, cpu: LOAD_CPU, ready_within: 30 + (IDLE * 0.02))
    end
    if m
      notes = []
      notes << "#{IDLE - m[:held]} not held" if m[:held] < IDLE
      notes << "#{m[:failed]} failed to open" if m[:failed].positive?
      puts format("  %-9s %6d held: %7.1f -> %7.1f MiB, %6.2f MiB per 1,000%s", label, m[:held], m[:before],
                  m[:after], m[:per_1000], notes.empty? ? "" : "  (#{notes.join('; ')})")
    else
      puts format("  %-9s could not hold idle connections (skipped)", label)
    end
    [label, m]
  end
  h2c, h1 = memory.values_at("h2c", "HTTP/1.1")
  ROWS << result_row("HTTP/2 idle memory (h2c vs HTTP/1.1)", memory.compact.transform_values { |m| [m[:per_1000]] }, nil,
                     unit: "MiB per 1,000 conns", better: "lower", ours: "h2c",
                     others: { "HTTP/1.1" => "iodine HTTP/1.1" })
  return h2c&.fetch(:per_1000) unless h2c && h1

  extra_kib = (h2c[:per_1000] - h1[:per_1000]) * 1024 / 1000
  puts format("  h2c / HTTP/1.1: %s; an idle h2c connection costs %.1f KiB more than an HTTP/1.1 one",
              times(h2c[:per_1000] / h1[:per_1000]), extra_kib)
  h2c[:per_1000]
end

$stdout.sync = true # each run shows as it ends, also through a pipe
abort "bench: h2load is missing (apt-get install nghttp2-client)" unless executable("h2load")
abort "bench: wrk is missing (bin/setup installs it)" unless executable("wrk")
abort "bench: taskset is missing (apt-get install util-linux)" unless executable("taskset")
abort "bench: openssl is missing (apt-get install openssl)" unless executable("openssl")
so = File.join(ROOT, "lib", "iodine", "iodine.#{RbConfig::CONFIG['DLEXT'] || 'so'}")
abort "bench: #{so} is missing: run rake compile" unless File.exist?(so)
if IDLE < REQUESTED_IDLE
  warn "bench: BENCH_H2_IDLE=#{REQUESTED_IDLE} is over the open-files limit " \
       "(#{Process.getrlimit(:NOFILE)[1]}); holding #{IDLE}"
end
nginx = executable("nginx")
goals = {} # goal line => value text and verdict

Dir.mktmpdir("bench-h2") do |tmp|
  if wanted?("hello")
    value = hello_part(tmp)
    goals[format("hello: h2c / HTTP/1.1 req/s >= %.2fx", GOAL_HELLO)] =
      [times(value), verdict(value, value >= GOAL_HELLO)]
    puts
  end
  if wanted?("static")
    if nginx
      value = static_part(tmp, nginx, self_signed_cert(tmp))
      goals[format("static 4 KiB h2 + TLS: iodine / nginx req/s >= %.2fx", GOAL_STATIC)] =
        [times(value), verdict(value, value >= GOAL_STATIC)]
    else
      puts "static: skipped: nginx is missing (apt-get install nginx)"
    end
    puts
  end
  if wanted?("idle")
    per_1000 = idle_part(tmp)
    goals["idle h2c: iodine MiB per 1,000 (reported, no goal)"] = [per_1000 ? format("%.2f MiB", per_1000) : "-", ""]
    puts
  end
end

unless goals.empty?
  puts "Goals"
  goals.each { |goal, (value, result)| puts format("  %-52s %10s  %s", goal, value, result).rstrip }
end

record_results("h2", ROWS)
