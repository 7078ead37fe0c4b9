# frozen_string_literal: true

# HTTP benchmark: wrk against examples/hello.ru, the server pinned to one core and wrk (or the
# idle client) to the other (taskset). Four parts:
#
# - overview: iodine -t 1/2/4, Debian's puma -t 1/4 and the engine's raw-Rust hello server
#   (the ceiling, no Ruby), one run each: req/s, p99, RSS and the ratios iodine/puma;
# - hello keep-alive: iodine -t 1 against the C gem (iodine 0.7, the same app and flags) and
#   the raw-Rust hello, run interleaved (A B C, C B A, …);
# - new connection: the same with `Connection: close`, so every request is a new TCP
#   connection (iodine and the C gem);
# - idle: the server's resident memory before and after BENCH_HTTP_IDLE connections that each
#   made one keep-alive request (GET /, whole response read) and then stay open and send
#   nothing, MiB per 1,000 (iodine and the C gem).
#
# For the paired cases every run prints req/s, p99, the server's CPU time (utime + stime of
# every thread) and its context switches per request, read from /proc right before and right
# after the measured wrk run (a 1 s wrk warm-up comes first), and wrk's share of its core;
# then the medians and the median of the per-pair ratios iodine / C gem (and iodine's share
# of the raw-Rust hello), each next to issue 22's goal.
#
#   rake bench                     # builds the raw-Rust hello, then runs this (and the others)
#   ruby bench/http.rb             # BENCH_SECONDS=5 BENCH_CONNECTIONS=100 BENCH_PAIRS=5 BENCH_HTTP_IDLE=10000
#   BENCH_CASES=hello ruby bench/http.rb     # only the parts whose name contains it
#                                            # (overview, hello keep-alive, new connection, idle)
#   BENCH_CGEM=/path/to/iodine-0.7/lib ruby bench/http.rb   # where the C gem is (c_gem in support.rb)
#   BENCH_RAW_HELLO=/path/to/hello ruby bench/http.rb       # another raw-Rust hello binary
#
# A baseline that is missing (puma, the C gem, the raw-Rust hello: `cargo build --release -p
# iodine-engine --example hello`, done by `rake bench`) is warned about and skipped; a server
# that does not start is warned about (with its log) and its runs count as failed.

require "socket"
require "rbconfig"
require "etc"
require "tmpdir"
require_relative "support"

ROOT = File.expand_path("..", __dir__)
SECONDS = Integer(ENV.fetch("BENCH_SECONDS", "5"))
CONNECTIONS = Integer(ENV.fetch("BENCH_CONNECTIONS", "100"))
PAIRS = Integer(ENV.fetch("BENCH_PAIRS", "5"))
REQUESTED_IDLE = Integer(ENV.fetch("BENCH_HTTP_IDLE", "10000"))
# Every server and the idle client inherit the hard open-files limit (the idle case holds
# thousands), so each can hold about that many.
Process.setrlimit(:NOFILE, Process.getrlimit(:NOFILE)[1])
IDLE = [REQUESTED_IDLE, Process.getrlimit(:NOFILE)[1] - 200].min
ONLY = ENV["BENCH_CASES"]
APP = File.join(ROOT, "examples", "hello.ru")
RAW = ENV.fetch("BENCH_RAW_HELLO", File.join(ROOT, "target", "release", "examples", "hello"))
SERVER_CPU = 0
WRK_CPU = Etc.nprocessors > 1 ? 1 : 0
# Issue 22's goals.
GOAL_HELLO = 1.10      # iodine / C gem req/s, hello keep-alive, at least
GOAL_CLOSE = 1.10      # iodine / C gem req/s, a new connection per request, at least
GOAL_IDLE = 4.0        # iodine MiB per 1,000 idle keep-alive connections, at most
GOAL_RAW_SHARE = 0.75  # iodine / raw-Rust hello req/s, at least
# The idle client gets this many seconds to open its connections (they must all still be open
# when the server's memory is read: the keep-alive timeout is 40 s in both servers).
IDLE_OPEN_SECONDS = 25

# Whether the part `name` runs (BENCH_CASES narrows them).
def wanted?(name)
  !ONLY || name.include?(ONLY)
end

# `iodine -t THREADS` serving APP, with the gem found on `paths` and run by `exe`.
def iodine(paths, exe, threads = 1)
  lambda do |port|
    [RbConfig.ruby, *paths.map { |p| "-I#{p}" }, exe, "-V", "1", "-t", threads.to_s, "-p", port.to_s,
     "-b", "127.0.0.1", APP]
  end
end

def puma(threads)
  ->(port) { ["puma", "-q", "-b", "tcp://127.0.0.1:#{port}", "-t", "#{threads}:#{threads}", "-w", "0", APP] }
end

OURS = [[File.join(ROOT, "lib")], File.join(ROOT, "exe", "iodine")].freeze

# How to start each server of the paired cases on a port.
SERVERS = { "iodine" => iodine(*OURS), "raw-Rust" => ->(port) { [RAW, port.to_s] } }
DEAD = {} # server => true once it failed to start (its later runs are skipped)

# Starts `server` (SERVERS' name, or a [name, cmd lambda] pair) pinned to SERVER_CPU and yields
# its pid and port once it accepts; nil (with a warning and the end of its log) if it did not.
def with_server(server, tmp)
  name, make = server.is_a?(Array) ? server : [server, SERVERS.fetch(server)]
  return nil if DEAD[name]

  port = free_port
  log = File.join(tmp, "#{name.tr(' ', '_')}-#{port}.log")
  with_pinned_server(make.call(port), port, cpu: SERVER_CPU, env: { "RACK_ENV" => "production" }, name: name,
                                            log: log) do |pid|
    yield pid, port
  end
rescue RuntimeError => e
  raise unless e.message.end_with?("did not start")

  DEAD[name] = true
  warn "  #{e.message}; its other runs are skipped. Its log:\n#{log_tail(log)}"
  nil
ensure
  File.delete(log) if log && File.exist?(log)
end

# Runs wrk on WRK_CPU against http://127.0.0.1:port/ for `seconds`; returns [output, CPU
# seconds wrk used].
def wrk(port, seconds, args = [])
  cmd = ["taskset", "-c", WRK_CPU.to_s, "wrk", "-t1", "-c#{CONNECTIONS}", "-d#{seconds}s", "--latency", *args,
         "http://127.0.0.1:#{port}/"]
  t0 = Process.times
  out = IO.popen(cmd, err: %i[child out], &:read)
  t1 = Process.times
  [out, (t1.cutime + t1.cstime) - (t0.cutime + t0.cstime)]
end

def latency_ms(text)
  return Float::NAN unless text

  value = text.to_f
  case text
  when /us\z/ then value / 1000
  when /ms\z/ then value
  when /s\z/ then value * 1000
  else value
  end
end

# wrk's errors (socket errors, non-2xx answers) as a note, or nil.
def wrk_errors(out)
  errors = [out[/Socket errors: .*/], out[/Non-2xx or 3xx responses: \d+/]].compact
  errors.empty? ? nil : errors.join("; ")
end

# One overview run: { rate:, p99:, rss_before:, rss_after:, note: }; NaNs if it failed.
def overview_run(name, make, tmp)
  run = { rate: Float::NAN, p99: Float::NAN, rss_before: Float::NAN, rss_after: Float::NAN, note: "did not start" }
  with_server([name, make], tmp) do |pid, port|
    wrk(port, 1) # warm up
    run[:rss_before] = rss_mb(pid)
    out, = wrk(port, SECONDS)
    run[:rss_after] = rss_mb(pid)
    run[:note] = wrk_errors(out)
    run[:rate] = out[%r{Requests/sec:\s+([\d.]+)}, 1].to_f
    run[:p99] = latency_ms(out[/^\s+99%\s+(\S+)/, 1])
  end
  run
end

# One run of a paired case: { rate:, p99:, cpu_us:, switches:, wrk_cpu:, note: } (the server's
# CPU time and context switches per request over the measured window); NaNs when the server
# or wrk failed.
def paired_run(server, args, tmp)
  run = { rate: Float::NAN, p99: Float::NAN, cpu_us: Float::NAN, switches: Float::NAN, wrk_cpu: Float::NAN,
          note: nil }
  started = false
  with_server(server, tmp) do |pid, port|
    started = true
    wrk(port, 1, args) # warm up
    cpu_before = cpu_seconds([pid])
    switches_before = context_switches([pid])
    out, wrk_cpu = wrk(port, SECONDS, args)
    cpu = cpu_seconds([pid]) - cpu_before
    switches = context_switches([pid]) - switches_before
    if Process.waitpid(pid, Process::WNOHANG)
      run[:note] = "the server exited during the run (#{$?.inspect})"
      next
    end
    requests = out[/(\d+) requests in/, 1].to_i
    run[:note] = wrk_errors(out)
    run[:wrk_cpu] = wrk_cpu / SECONDS
    if requests.zero?
      run[:note] ||= "no request answered: #{out.lines.last&.strip}"
      next
    end
    run[:rate] = out[%r{Requests/sec:\s+([\d.]+)}, 1].to_f
    run[:p99] = latency_ms(out[/^\s+99%\s+(\S+)/, 1])
    run[:cpu_us] = cpu / requests * 1e6
    run[:switches] = switches.to_f / requests
  end
  run[:note] ||= "did not start" unless started
  run
end

# Runs bench/idle_client.rb: COUNT connections to `port`, one GET each, and yields [open,
# failed] once they are all open; nil if it never said it was ready. Bounded:
# IDLE_OPEN_SECONDS to open them, plus 25 s for the last ones; the client exits when the block
# returns.
def idle_clients(port, count, &block)
  with_idle_client(port, count, "get", cpu: WRK_CPU, open_for: IDLE_OPEN_SECONDS,
                                       ready_within: IDLE_OPEN_SECONDS + 25, &block)
end

# Server memory for IDLE idle keep-alive connections: { held:, missing:, failed:, before:,
# after:, per_1000: } (MiB; held: what both the server and the client hold at the end), nil
# if it failed.
def idle_memory(server, tmp)
  with_server(server, tmp) do |pid, port|
    # Warm up first, so what loads on the first connections and requests is not counted.
    idle_clients(port, 100) { nil }
    sleep 0.5
    before = rss_mb(pid)
    result = nil
    idle_clients(port, IDLE) do |open, failed|
      sleep 0.5 # the server settles
      held = connections_by_process([pid], port)[pid]
      after = rss_mb(pid)
      count = [held, open].min
      if count.positive?
        result = { held: count, missing: IDLE - count, failed: failed, before: before, after: after,
                   per_1000: (after - before) * 1000 / count }
      end
    end
    result
  end
end

# The median of the per-pair ratios a/b of `metric` and the ratios themselves.
def pair_ratios(runs, a, b, metric)
  ratios = pair_ratios_of(runs, a, b, metric)
  [median(ratios.reject(&:infinite?)), ratios]
end

# "met" / "NOT met" / "not measured" for `value` against a goal.
def verdict(value, ok)
  return "not measured" if value.nil? || value.nan? || value.infinite?

  ok ? "met" : "NOT met"
end

$stdout.sync = true # each run shows as it ends, also through a pipe
abort "bench: wrk is missing (bin/setup installs it)" unless system("which wrk > /dev/null")
raw = File.executable?(RAW)
unless raw
  warn "bench: #{RAW} is missing (rake bench builds it: cargo build --release -p iodine-engine --example hello): " \
       "no raw-Rust ceiling"
end
puma = system("which puma > /dev/null")
warn "bench: puma is missing (apt install puma): no puma baseline" unless puma
c_paths, c_exe, why = c_gem_server
if why
  warn "bench: skipping the C gem (iodine 0.7): #{why}"
else
  SERVERS["iodine-C"] = iodine(c_paths, c_exe)
end
cgem = !why
if IDLE < REQUESTED_IDLE
  warn "bench: BENCH_HTTP_IDLE=#{REQUESTED_IDLE} is over the open-files limit " \
       "(#{Process.getrlimit(:NOFILE)[1]}); holding #{IDLE}"
end
goals = {} # goal line => [value text, verdict]
# What the end records for bench/RESULTS.md, filled in below.
results = {}
memory = {}
puma_best = nil

Dir.mktmpdir("bench-http") do |tmp|
  if wanted?("overview")
    overview = [
      ["raw Rust (engine, no Ruby)", raw && SERVERS["raw-Rust"]],
      ["iodine -t 1", iodine(*OURS, 1)],
      ["iodine -t 2", iodine(*OURS, 2)],
      ["iodine -t 4", iodine(*OURS, 4)],
      ["puma -t 1", puma && puma(1)],
      ["puma -t 4", puma && puma(4)]
    ]
    puts "Overview: servers pinned to CPU #{SERVER_CPU}, wrk -t1 -c#{CONNECTIONS} on CPU #{WRK_CPU}, " \
         "one run of #{SECONDS} s each"
    runs = overview.to_h do |name, make|
      [name, make ? overview_run(name, make, tmp) : nil]
    end
    puts
    puts format("%-28s %12s %10s %18s", "server (pinned to 1 core)", "req/s", "p99 ms", "RSS MiB (growth)")
    runs.each do |name, run|
      if run.nil?
        puts format("%-28s %12s", name, "skipped")
      else
        puts format("%-28s %12s %10.2f %10.1f (%+.1f)%s", name, rate(run[:rate]), run[:p99], run[:rss_after],
                    run[:rss_after] - run[:rss_before], run[:note] ? "  (#{run[:note]})" : "")
      end
    end
    rps = ->(name) { runs[name] ? runs[name][:rate] : Float::NAN }
    best = ->(names) { names.map(&rps).reject(&:nan?).max || Float::NAN }
    puma_best = best.(["puma -t 1", "puma -t 4"])
    puts
    puts format("iodine -t 1 / puma -t 1:          %7s   (C gem: 11x)", times(rps.("iodine -t 1") / rps.("puma -t 1")))
    puts format("iodine best / puma best:          %7s   (C gem: 5.6x)",
                times(best.(["iodine -t 1", "iodine -t 2", "iodine -t 4"]) / best.(["puma -t 1", "puma -t 4"])))
    share = rps.("iodine -t 1") / rps.("raw Rust (engine, no Ruby)")
    puts format("iodine -t 1 / raw-Rust ceiling:   %6s   (one run each; the paired figure is under hello keep-alive)",
                share.nan? ? "-" : format("%.0f%%", share * 100))
  end

  paired = [
    ["hello keep-alive", [], GOAL_HELLO],
    ["new connection", ["-H", "Connection: close"], GOAL_CLOSE]
  ].select { |name, _, _| wanted?(name) }
  unless paired.empty?
    puts
    puts "iodine -t 1 against the C gem (iodine 0.7, -t 1): #{PAIRS} interleaved pair(s) of #{SECONDS} s, " \
         "wrk -t1 -c#{CONNECTIONS}"
  end
  results = {}
  paired.each do |name, args, _|
    these = ["iodine"]
    these << "iodine-C" if cgem
    these << "raw-Rust" if raw && args.empty? # the raw-Rust hello: the keep-alive ceiling
    runs = these.to_h { |server| [server, []] }
    PAIRS.times do |i|
      # Alternate the order (A B C, C B A, …), so a drift within a pair favours none.
      (i.even? ? these : these.reverse).each do |server|
        run = paired_run(server, args, tmp)
        runs[server] << run
        puts format("  %-16s %-9s %10s req/s  p99 %7.2f ms %8.1f us CPU/req %7.3f switches/req  wrk %3.0f%% CPU%s",
                    name, server, rate(run[:rate]), run[:p99], run[:cpu_us], run[:switches], run[:wrk_cpu] * 100,
                    run[:note] ? "  (#{run[:note]})" : "")
      end
    end
    results[name] = runs
  end

  # For each case: each server's medians, then iodine against the C gem (the median of the
  # per-pair ratios; req/s: higher is better, CPU per request: lower is better) and against
  # the raw-Rust hello.
  paired.each do |name, _, goal|
    runs = results[name]
    puts
    puts name
    runs.each do |server, list|
      med = ->(metric) { median(list.map { |r| r[metric] }) }
      puts format("  %-9s %10s req/s  p99 %7.2f ms %8.1f us CPU/req %7.3f switches/req  wrk %3.0f%% CPU", server,
                  rate(med.(:rate)), med.(:p99), med.(:cpu_us), med.(:switches), med.(:wrk_cpu) * 100)
    end
    if runs["iodine-C"]
      rps, = pair_ratios(runs, "iodine", "iodine-C", :rate)
      puts format("  iodine / iodine-C req/s %-26s CPU/req %-26s switches/req %s  (goal: req/s >= %.2fx: %s)",
                  ratio(runs, "iodine", "iodine-C", :rate), ratio(runs, "iodine", "iodine-C", :cpu_us),
                  ratio(runs, "iodine", "iodine-C", :switches), goal, verdict(rps, rps >= goal))
      goals["#{name}: iodine / iodine-C req/s >= #{format('%.2f', goal)}x"] = [times(rps), verdict(rps, rps >= goal)]
    else
      goals["#{name}: iodine / iodine-C req/s >= #{format('%.2f', goal)}x"] = ["-", "not measured (no C gem)"]
    end
    if runs.values.flatten.map { |r| r[:wrk_cpu] }.reject(&:nan?).max.to_f >= 0.9
      puts "  (wrk used its whole core: req/s may be the client's limit here; CPU/req compares the servers)"
    end
    next unless name == "hello keep-alive"

    if runs["raw-Rust"]
      share, ratios = pair_ratios(runs, "iodine", "raw-Rust", :rate)
      pairs = ratios.map { |r| r.nan? || r.infinite? ? "-" : format("%.0f%%", r * 100) }.join(" ")
      text = share.nan? ? "-" : format("%.0f%%", share * 100)
      puts format("  iodine is %s of the raw-Rust hello (pairs: %s)  (goal: >= %.0f%%: %s)", text, pairs,
                  GOAL_RAW_SHARE * 100, verdict(share, share >= GOAL_RAW_SHARE))
      goals["hello keep-alive: iodine >= #{(GOAL_RAW_SHARE * 100).round}% of the raw-Rust hello"] =
        [text, verdict(share, share >= GOAL_RAW_SHARE)]
    else
      goals["hello keep-alive: iodine >= #{(GOAL_RAW_SHARE * 100).round}% of the raw-Rust hello"] =
        ["-", "not measured (no raw-Rust hello)"]
    end
  end

  if wanted?("idle")
    puts
    puts "Idle keep-alive connections (#{rate(IDLE.to_f)}, each after one GET /, opened by a Ruby client on " \
         "CPU #{WRK_CPU}; server RSS before -> after)"
    memory = {}
    (cgem ? %w[iodine iodine-C] : %w[iodine]).each do |server|
      m = memory[server] = idle_memory(server, tmp)
      if m
        notes = []
        notes << "#{m[:missing]} not held" if m[:missing].positive?
        notes << "#{m[:failed]} failed to open" if m[:failed].positive?
        puts format("  %-9s %6d held: %7.1f -> %7.1f MiB, %6.2f MiB per 1,000%s", server, m[:held], m[:before],
                    m[:after], m[:per_1000], notes.empty? ? "" : "  (#{notes.join('; ')})")
      else
        puts format("  %-9s could not hold idle connections (skipped)", server)
      end
    end
    ours = memory["iodine"]&.fetch(:per_1000)
    if ours && memory["iodine-C"]
      puts format("  iodine / iodine-C memory per connection: %s", times(ours / memory["iodine-C"][:per_1000]))
    end
    ok = ours && ours <= GOAL_IDLE
    puts format("  (goal: iodine <= %.0f MiB per 1,000: %s)", GOAL_IDLE, verdict(ours, ok))
    goals[format("idle keep-alive: iodine <= %.0f MiB per 1,000", GOAL_IDLE)] =
      [ours ? format("%.2f MiB", ours) : "-", verdict(ours, ok)]
  end
end

unless goals.empty?
  puts
  puts "Goals (issue 22)"
  goals.each { |goal, (value, result)| puts format("  %-58s %10s  %s", goal, value, result) }
end

# The headline figures, for bench/RESULTS.md: iodine against the C gem (the paired cases, with
# the best puma of the overview beside hello) and the idle memory.
rows = results.map do |name, runs|
  goal = name == "hello keep-alive" ? GOAL_HELLO : GOAL_CLOSE
  cpu = runs["iodine-C"] && note_times(pair_ratios(runs, "iodine", "iodine-C", :cpu_us)[0])
  share = runs["raw-Rust"] ? pair_ratios(runs, "iodine", "raw-Rust", :rate)[0] : Float::NAN
  notes = [cpu && "CPU per request #{cpu} the C gem's", share.finite? && format("%.0f%% of the raw-Rust hello", share * 100)]
  goals_text = [format("≥ %.2f× C gem", goal)]
  goals_text << format("≥ %.0f%% of raw Rust", GOAL_RAW_SHARE * 100) if name == "hello keep-alive"
  row = result_row(name == "hello keep-alive" ? "hello (keep-alive)" : "new connection per request", runs, :rate,
                   unit: "req/s", cgem: "iodine-C", goal: goals_text.join(", "),
                   note: notes)
  if name == "hello keep-alive" && result_number(puma_best)
    row.merge!(best_other: result_number(puma_best), best_other_name: "puma")
  end
  row
end
unless memory.empty?
  idle = memory.compact.transform_values { |m| [m[:per_1000]] }
  rows << result_row("idle keep-alive memory", idle, nil, unit: "MiB per 1,000 conns", better: "lower", cgem: "iodine-C",
                     goal: format("≤ %.0f MiB per 1,000", GOAL_IDLE))
end
record_results("http", rows)
