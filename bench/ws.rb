# frozen_string_literal: true

# WebSocket/SSE benchmark: iodine -t 1 (bench/ws_app.ru) against the C gem (iodine 0.7, the
# same app, -t 1) and puma -t 4 with faye-websocket (bench/faye_app.ru), run interleaved
# (A B A B …) with the server pinned to one core and the load tool (bench/wsload, Rust) to the
# other. Prints every run, then for each case the median of the per-round ratios
# iodine/baseline, the server's CPU time per message (utime + stime of every thread, read from
# /proc at the edges of the measured window: what still tells servers apart when the load
# tool nears its own limit) and its context switches per message; then the server memory per
# 1,000 idle WebSocket connections.
#
#   rake bench_ws                      # builds bench/wsload, then runs this
#   BENCH_PAIRS=3 BENCH_SECONDS=5 BENCH_IDLE=10000 ruby bench/ws.rb
#   BENCH_WS_BASE=cgem ruby bench/ws.rb     # baselines: cgem, faye, both (default), none
#   BENCH_CASES=echo ruby bench/ws.rb       # only the cases whose name contains it ("idle" too)
#
# The echo cases and the idle case also run the engine's raw-Rust WebSocket echo (no Ruby:
# `cargo build --release -p iodine-engine --example ws_echo`, done by `rake bench_ws`), the
# ceiling, and print iodine's share of it.
#
# Cases: echo of 32 B messages from 100 clients and of 4 KiB from 10 (one message in flight
# per client), fan-out of one publisher to 100 and 1,000 WebSocket subscribers, and to 100 SSE
# subscribers (the publisher stays at most 64 messages ahead of the subscribers).

require "json"
require "rbconfig"
require "etc"
require_relative "support"

ROOT = File.expand_path("..", __dir__)
PAIRS = Integer(ENV.fetch("BENCH_PAIRS", "3"))
SECONDS = Integer(ENV.fetch("BENCH_SECONDS", "5"))
IDLE = Integer(ENV.fetch("BENCH_IDLE", "10000"))
BASE = ENV.fetch("BENCH_WS_BASE", "both")
ONLY = ENV["BENCH_CASES"]
SERVER_CPU = 0
LOAD_CPU = Etc.nprocessors > 1 ? 1 : 0
RAW = File.join(ROOT, "target", "release", "examples", "ws_echo")
APP = File.join(__dir__, "ws_app.ru")

# `iodine -t 1` serving the bench app, with the gem found on `paths` and run by `exe`.
def iodine(paths, exe)
  lambda do |port|
    [RbConfig.ruby, *paths.map { |p| "-I#{p}" }, exe, "-V", "1", "-p", port.to_s, "-b", "127.0.0.1", "-t", "1", APP]
  end
end

# How to start each server on a port.
SERVERS = {
  "iodine" => iodine([File.join(ROOT, "lib")], File.join(ROOT, "exe", "iodine")),
  "raw" => ->(port) { [RAW, port.to_s] },
  "faye" => lambda do |port|
    ["puma", "-q", "-b", "tcp://127.0.0.1:#{port}", "-t", "4:4", "-w", "0", File.join(__dir__, "faye_app.ru")]
  end
}

# Name, wsload mode and arguments (HOST becomes 127.0.0.1:port), and the JSON field measured.
CASES = [
  ["echo 32 B x 100", "echo", %w[--url ws://HOST/echo --clients 100 --size 32], "msgs_per_sec"],
  ["echo 4 KiB x 10", "echo", %w[--url ws://HOST/echo --clients 10 --size 4096], "msgs_per_sec"],
  ["fan-out x 100", "fanout", %w[--url ws://HOST/sub --publish ws://HOST/pub --subscribers 100], "delivered_per_sec"],
  ["fan-out x 1000", "fanout", %w[--url ws://HOST/sub --publish ws://HOST/pub --subscribers 1000], "delivered_per_sec"],
  ["SSE fan-out x 100", "sse", %w[--url http://HOST/sse --publish ws://HOST/pub --subscribers 100], "delivered_per_sec"]
].freeze

# Starts `server` pinned to SERVER_CPU and yields its pid and port; nil (with a warning) if it
# did not start.
def with_server(server)
  port = free_port
  cmd = SERVERS.fetch(server).call(port)
  with_pinned_server(cmd, port, cpu: SERVER_CPU, env: { "RACK_ENV" => "production" }, name: server) do |pid|
    yield pid, port
  end
rescue RuntimeError => e
  warn "  #{e.message}"
  nil
end

# One run of a case: { rate:, cpu_us:, switches: } (per message, over the measured window);
# NaNs when the server or the tool failed.
def measure(server, mode, args, field)
  run = { rate: Float::NAN, cpu_us: Float::NAN, switches: Float::NAN }
  with_server(server) do |pid, port|
    marks = {}
    result = wsload(mode, [*args, "--seconds", SECONDS.to_s], port, cpus: LOAD_CPU) do |line|
      mark = line[/"window":"(\w+)"/, 1]
      marks[mark] = [cpu_seconds([pid]), context_switches([pid])] if mark
    end
    next unless result

    run[:rate] = result.fetch(field).to_f
    next unless marks["start"] && marks["end"]

    messages = run[:rate] * SECONDS
    run[:cpu_us] = (marks["end"][0] - marks["start"][0]) / messages * 1e6
    run[:switches] = (marks["end"][1] - marks["start"][1]) / messages
  end
  run
end

# Server memory for IDLE idle connections: [connections held, MiB per 1,000], nil if it failed.
def idle_memory(server)
  with_server(server) do |pid, port|
    url = ["--url", "ws://HOST/echo"]
    # Warm up first, so what loads on the first upgrade (faye's reactor, …) is not counted.
    wsload("idle", [*url, "--count", "100", "--hold", "0"], port, cpus: LOAD_CPU)
    before = rss_mb(pid)
    after = nil
    held = wsload("idle", [*url, "--count", IDLE.to_s, "--hold", "3"], port, cpus: LOAD_CPU) do |_line|
      sleep 0.5 # the tool printed: every connection is open and held now
      after = rss_mb(pid)
    end
    next nil unless held && held["open"].positive?

    warn "  #{server}: #{held['failed']} of #{IDLE} connections failed" if held["failed"].positive?
    [held["open"], (after - before) * 1000 / held["open"]]
  end
end

$stdout.sync = true # each run shows as it ends, also through a pipe
abort "bench: #{WSLOAD} is missing: rake bench_ws builds it" unless File.executable?(WSLOAD)
abort "bench: BENCH_WS_BASE must be cgem, faye, both or none (got #{BASE.inspect})" unless %w[cgem faye both none].include?(BASE)
servers = ["iodine"]
if %w[cgem both].include?(BASE)
  c_paths, c_exe, why = c_gem_server
  if why
    warn "bench: skipping the C gem (iodine 0.7): #{why}"
  else
    SERVERS["iodine-C"] = iodine(c_paths, c_exe)
    servers << "iodine-C"
  end
end
if %w[faye both].include?(BASE)
  if (why = faye_missing)
    warn "bench: skipping the puma + faye baseline: #{why}"
  else
    servers << "faye"
  end
end

# Every server inherits the hard open-files limit (the idle case holds thousands).
_, hard = Process.getrlimit(:NOFILE)
Process.setrlimit(:NOFILE, hard, hard)
raw = File.executable?(RAW)
warn "bench: #{RAW} is missing (rake bench_ws builds it): no raw-Rust ceiling" unless raw

results = {}
CASES.each do |name, mode, args, field|
  next if ONLY && !name.include?(ONLY)

  # The raw-Rust server only echoes.
  these = raw && mode == "echo" ? servers + ["raw"] : servers
  runs = these.to_h { |server| [server, []] }
  PAIRS.times do |i|
    # Alternate which goes first, so a drift within a pair favours neither.
    (i.even? ? these : these.reverse).each do |server|
      run = measure(server, mode, args, field)
      runs[server] << run
      puts format("  %-18s %-9s %12s /s %8.2f us CPU %6.3f switches per message", name, server, rate(run[:rate]),
                  run[:cpu_us], run[:switches])
    end
  end
  results[name] = runs
end

# For each case: iodine's median, and against each baseline the median of the per-round
# ratios (rate: iodine / baseline, higher is better; CPU per message: iodine / baseline,
# lower is better).
unless results.empty?
  puts
  results.each do |name, runs|
    puts name
    runs.each do |server, list|
      puts format("  %-9s %12s /s %8.2f us CPU/msg %7.3f switches/msg", server, rate(median(list.map { |r| r[:rate] })),
                  median(list.map { |r| r[:cpu_us] }), median(list.map { |r| r[:switches] }))
    end
    (servers - ["iodine"]).each do |base|
      puts format("  iodine / %-9s rate %-28s CPU/msg %s", base, ratio(runs, "iodine", base, :rate),
                  ratio(runs, "iodine", base, :cpu_us))
    end
    next unless runs["raw"]

    share = median(runs["iodine"].map { |r| r[:rate] }) / median(runs["raw"].map { |r| r[:rate] })
    puts format("  iodine is %.0f%% of the raw-Rust echo", share * 100)
  end
end

idle = nil # server => [MiB per 1,000], for the results
if !ONLY || "idle".include?(ONLY)
  idle = {}
  puts
  (raw ? servers + ["raw"] : servers).each do |server|
    held, per_1000 = idle_memory(server)
    idle[server] = [per_1000] if held
    if held
      puts format("%-9s holding %6d idle WebSocket connections: %6.1f MiB per 1,000", server, held, per_1000)
    else
      puts format("%-9s could not hold idle WebSocket connections (skipped)", server)
    end
  end
end

# The headline figures, for bench/RESULTS.md: each case and the idle memory against the C gem
# (else puma + faye), with the CPU per message and the raw-Rust ceiling in the notes.
others = { "faye" => "puma + faye" }
rows = results.map do |name, runs|
  field = CASES.find { |c| c[0] == name }[3]
  cpu = pair_note(runs, "iodine", "iodine-C", :cpu_us)
  share = runs["raw"] && median(runs["iodine"].map { |r| r[:rate] }) / median(runs["raw"].map { |r| r[:rate] })
  share = share&.finite? && format("%.0f%% of the raw-Rust echo", share * 100)
  result_row(name.start_with?("SSE") ? name.sub(" x ", " ×") : "WS #{name.sub(' x ', ' ×')}", runs, :rate,
             unit: field == "msgs_per_sec" ? "msg/s" : "delivered/s", cgem: "iodine-C", others: others,
             note: [cpu && "CPU per message #{cpu} the C gem's", share])
end
if idle
  raw_idle = idle["raw"] && format("raw Rust %.1f MiB per 1,000", idle["raw"][0])
  rows << result_row("WS idle memory", idle, nil, unit: "MiB per 1,000 conns", better: "lower", cgem: "iodine-C",
                     others: others, note: raw_idle)
end
record_results("ws", rows)
