# frozen_string_literal: true

# HTTP benchmark: wrk against examples/hello.ru served by iodine and by Debian's puma, plus the
# engine's raw-Rust hello server (the ceiling), all in one run so the ratios are comparable on
# a noisy machine. The server is pinned to one core and wrk to another (taskset).
#
#   ruby bench/http.rb            # BENCH_SECONDS=5 BENCH_CONNECTIONS=100 by default
#
# Prints req/s, p99 latency and the ratios iodine/puma and iodine/raw-Rust.

require "socket"
require "rbconfig"
require "etc"
require_relative "support"

ROOT = File.expand_path("..", __dir__)
SECONDS = Integer(ENV.fetch("BENCH_SECONDS", "5"))
CONNECTIONS = Integer(ENV.fetch("BENCH_CONNECTIONS", "100"))
APP = File.join(ROOT, "examples", "hello.ru")
SERVER_CPU = 0
WRK_CPU = Etc.nprocessors > 1 ? 1 : 0

# Starts `cmd` pinned to SERVER_CPU, runs wrk, stops the server; returns [req/s, p99 ms].
def measure(name, cmd, port)
  with_pinned_server(cmd, port, cpu: SERVER_CPU, env: { "RACK_ENV" => "production" }, name: name) do |pid|
    # Warm up, then measure.
    `taskset -c #{WRK_CPU} wrk -t1 -c#{CONNECTIONS} -d1s http://127.0.0.1:#{port}/ 2>&1`
    rss_before = rss_mb(pid)
    out = `taskset -c #{WRK_CPU} wrk -t1 -c#{CONNECTIONS} -d#{SECONDS}s --latency http://127.0.0.1:#{port}/ 2>&1`
    rps = out[/Requests\/sec:\s+([\d.]+)/, 1].to_f
    p99 = latency_ms(out[/^\s+99%\s+(\S+)/, 1])
    errors = out[/Non-2xx or 3xx responses: (\d+)/, 1] || out[/Socket errors: .*/]
    warn "#{name}: #{errors}" if errors
    [rps, p99, rss_before, rss_mb(pid)]
  end
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

abort "bench: wrk is missing (bin/setup installs it)" unless system("which wrk > /dev/null")
system("cargo", "build", "--release", "--quiet", "-p", "iodine-engine", "--example", "hello", chdir: ROOT) || abort("cargo build failed")
raw = File.join(ROOT, "target", "release", "examples", "hello")
iodine = [RbConfig.ruby, "-I#{File.join(ROOT, 'lib')}", File.join(ROOT, "exe", "iodine"), "-V", "1"]

runs = {}
[
  ["raw Rust (engine, no Ruby)", ->(p) { [raw, p.to_s] }],
  ["iodine -t 1", ->(p) { [*iodine, "-p", p.to_s, "-b", "127.0.0.1", "-t", "1", APP] }],
  ["iodine -t 2", ->(p) { [*iodine, "-p", p.to_s, "-b", "127.0.0.1", "-t", "2", APP] }],
  ["iodine -t 4", ->(p) { [*iodine, "-p", p.to_s, "-b", "127.0.0.1", "-t", "4", APP] }],
  ["puma -t 1", ->(p) { ["puma", "-q", "-b", "tcp://127.0.0.1:#{p}", "-t", "1:1", "-w", "0", APP] }],
  ["puma -t 4", ->(p) { ["puma", "-q", "-b", "tcp://127.0.0.1:#{p}", "-t", "4:4", "-w", "0", APP] }]
].each do |name, cmd|
  port = free_port
  runs[name] = measure(name, cmd.call(port), port)
end

puts
puts format("%-28s %12s %10s %18s", "server (pinned to 1 core)", "req/s", "p99 ms", "RSS MiB (growth)")
runs.each do |name, (rps, p99, before, after)|
  puts format("%-28s %12.0f %10.2f %10.1f (%+.1f)", name, rps, p99, after, after - before)
end
puma_best = [runs["puma -t 1"][0], runs["puma -t 4"][0]].max
iodine_best = ["iodine -t 1", "iodine -t 2", "iodine -t 4"].map { |n| runs[n][0] }.max
raw_rps = runs["raw Rust (engine, no Ruby)"][0]
puts
puts format("iodine -t 1 / puma -t 1:          %5.1fx   (C gem: 11x)", runs["iodine -t 1"][0] / runs["puma -t 1"][0])
puts format("iodine best / puma best:          %5.1fx   (C gem: 5.6x)", iodine_best / puma_best)
puts format("iodine -t 1 / raw-Rust ceiling:   %5.0f%%   (target: >= 60%%)", 100 * runs["iodine -t 1"][0] / raw_rps)
