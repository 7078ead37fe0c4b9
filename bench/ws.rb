# frozen_string_literal: true

# WebSocket/SSE benchmark: iodine -t 1 (bench/ws_app.ru) against a baseline, puma -t 4 with
# faye-websocket (bench/faye_app.ru), run interleaved (A B A B …) with the server pinned to one
# core and the load tool (bench/wsload, Rust) to the other. Prints every run, the median of
# the per-pair ratios iodine/baseline for each case, then the server memory per 1,000 idle
# WebSocket connections.
#
#   rake bench_ws                      # builds bench/wsload, then runs this
#   BENCH_PAIRS=3 BENCH_SECONDS=5 BENCH_IDLE=10000 ruby bench/ws.rb
#   BENCH_WS_BASE=none ruby bench/ws.rb     # iodine only
#   BENCH_CASES=fan-out ruby bench/ws.rb    # only the cases whose name contains it ("idle" too)
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
BASE = ENV.fetch("BENCH_WS_BASE", "faye")
ONLY = ENV["BENCH_CASES"]
SERVER_CPU = 0
LOAD_CPU = Etc.nprocessors > 1 ? 1 : 0
RAW = File.join(ROOT, "target", "release", "examples", "ws_echo")

# How to start each server on a port.
SERVERS = {
  "iodine" => lambda do |port|
    [RbConfig.ruby, "-I#{File.join(ROOT, 'lib')}", File.join(ROOT, "exe", "iodine"), "-V", "1",
     "-p", port.to_s, "-b", "127.0.0.1", "-t", "1", File.join(__dir__, "ws_app.ru")]
  end,
  "raw" => ->(port) { [RAW, port.to_s] },
  "faye" => lambda do |port|
    ["puma", "-q", "-b", "tcp://127.0.0.1:#{port}", "-t", "4:4", "-w", "0", File.join(__dir__, "faye_app.ru")]
  end
}.freeze

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

# One run of a case: the measured rate, or NaN when the server or the tool failed.
def measure(server, mode, args, field)
  result = with_server(server) { |_pid, port| wsload(mode, [*args, "--seconds", SECONDS.to_s], port, cpus: LOAD_CPU) }
  result ? result.fetch(field).to_f : Float::NAN
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
servers = ["iodine"]
if BASE == "faye"
  if (why = faye_missing)
    warn "bench: skipping the puma + faye baseline: #{why}"
  else
    servers << "faye"
  end
elsif BASE != "none"
  abort "bench: BENCH_WS_BASE must be faye or none (got #{BASE.inspect})"
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
      value = measure(server, mode, args, field)
      runs[server] << value
      puts format("  %-18s %-7s %12s /s", name, server, rate(value))
    end
  end
  results[name] = runs
end

unless results.empty?
  puts
  base = servers[1]
  header = format("%-18s %14s", "case (median)", "iodine")
  header += format(" %14s %8s   %-16s", base, "ratio", "pair ratios") if base
  header += format(" %12s %8s", "raw Rust", "of raw")
  puts header
  results.each do |name, runs|
    line = format("%-18s %14s", name, rate(median(runs["iodine"])))
    if base
      ratios = runs["iodine"].zip(runs[base]).map { |a, b| a / b }
      pairs = ratios.map { |r| format("%.2f", r) }.join(" ")
      line += format(" %14s %7.2fx   %-16s", rate(median(runs[base])), median(ratios), pairs)
    end
    if runs["raw"]
      share = median(runs["iodine"]) / median(runs["raw"])
      line += format(" %12s %7.0f%%", rate(median(runs["raw"])), share * 100)
    end
    puts line
  end
end

if !ONLY || "idle".include?(ONLY)
  puts
  (raw ? servers + ["raw"] : servers).each do |server|
    held, per_1000 = idle_memory(server)
    if held
      puts format("%-7s holding %6d idle WebSocket connections: %6.1f MiB per 1,000", server, held, per_1000)
    else
      puts format("%-7s could not hold idle WebSocket connections (skipped)", server)
    end
  end
end
