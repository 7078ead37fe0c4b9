# frozen_string_literal: true

# Action Cable benchmark: one Rails 6.1 app (spec/support/apps/rails: production mode,
# ChatChannel streams "chat", POST /announce broadcasts to it) with BENCH_CABLE_CLIENTS
# (5,000) Action Cable clients subscribed, and broadcasts to all of them, on:
# - iodine -t 4: Action Cable served natively (rack.upgrade) with `adapter: iodine`;
# - puma -t 4 (Debian's): stock Action Cable (rack.hijack, websocket-driver, its nio4r event
#   loop) with the async adapter, as Rails runs it;
# - with BENCH_CABLE_HIJACK=1 also iodine -t 4 running stock Action Cable
#   (IODINE_ACTION_CABLE=hijack, async adapter): what the server alone changes.
# Interleaved (A B A B ...), each server pinned to one core and the load tool (bench/wsload's
# `cable` mode, Rust) to the other. Per run: the server's memory per 1,000 subscribed clients
# (RSS with them minus RSS before them), the median time over BENCH_CABLE_ROUNDS (5)
# broadcasts from the POST until the last client received it, the deliveries per second that
# makes, and the server's CPU time per delivery. Then the medians of the per-pair ratios.
#
#   rake bench_cable                  # builds bench/wsload, then runs this
#   BENCH_PAIRS=3 BENCH_CABLE_CLIENTS=5000 BENCH_CABLE_ROUNDS=5 ruby bench/cable.rb

require "json"
require "rbconfig"
require "etc"
require "net/http"
require_relative "support"

ROOT = File.expand_path("..", __dir__)
PAIRS = Integer(ENV.fetch("BENCH_PAIRS", "3"))
CLIENTS = Integer(ENV.fetch("BENCH_CABLE_CLIENTS", "5000"))
ROUNDS = Integer(ENV.fetch("BENCH_CABLE_ROUNDS", "5"))
SERVER_CPU = 0
LOAD_CPU = Etc.nprocessors > 1 ? 1 : 0
APP_DIR = File.join(ROOT, "spec", "support", "apps", "rails")
APP = File.join(APP_DIR, "config.ru")
RAILS_ENV = { "RAILS_ENV" => "production" }.freeze

def iodine_cmd(port)
  [RbConfig.ruby, "-I#{File.join(ROOT, 'lib')}", File.join(ROOT, "exe", "iodine"),
   "-p", port.to_s, "-b", "127.0.0.1", "-t", "4", "-w", "1", APP]
end

SERVERS = {
  "iodine" => { cmd: ->(port) { iodine_cmd(port) }, env: RAILS_ENV.merge("CABLE_ADAPTER" => "iodine") },
  "puma" => { cmd: ->(port) { ["puma", "-q", "-b", "tcp://127.0.0.1:#{port}", "-t", "4:4", "-w", "0", APP] },
              env: RAILS_ENV },
  "iodine-hijack" => { cmd: ->(port) { iodine_cmd(port) }, env: RAILS_ENV.merge("IODINE_ACTION_CABLE" => "hijack") }
}.freeze

# One run of `name`: { "mib_per_1000", "median_ms", "deliveries_per_sec", "cpu_us" } (NaN
# for what failed).
def run(name)
  server = SERVERS.fetch(name)
  port = free_port
  result = Hash.new(Float::NAN)
  with_pinned_server(server[:cmd].call(port), port, cpu: SERVER_CPU, env: server[:env], name: name) do |pid|
    # Loaded and warm: a page, and Action Cable's server (one client in and out).
    Net::HTTP.get(URI("http://127.0.0.1:#{port}/page"))
    wsload("cable", %w[--url ws://HOST/cable --trigger http://HOST/announce --clients 1 --rounds 1 --pause 0], port, cpus: LOAD_CPU)
    sleep 1
    before = rss_mb(pid)
    cpu_start = nil
    args = ["--url", "ws://HOST/cable", "--trigger", "http://HOST/announce", "--clients", CLIENTS.to_s,
            "--rounds", ROUNDS.to_s, "--pause", "2", "--parallel", "50"]
    last = wsload("cable", args, port, cpus: LOAD_CPU) do |line|
      report = JSON.parse(line)
      next unless report.key?("subscribed")

      warn "  #{name}: #{report['failed']} clients failed to subscribe" if report["failed"].positive?
      sleep 1 # the tool pauses 2 s: the server settles, then its memory is read
      result["mib_per_1000"] = (rss_mb(pid) - before) * 1000.0 / [report["subscribed"], 1].max
      cpu_start = cpu_seconds([pid])
    end
    if last && cpu_start
      result["median_ms"] = last["median_ms"].to_f
      result["deliveries_per_sec"] = last["deliveries_per_sec"].to_f
      result["cpu_us"] = (cpu_seconds([pid]) - cpu_start) * 1e6 / (last["clients"] * ROUNDS)
    end
  end
  result
rescue StandardError => e
  warn "  #{name}: #{e.class}: #{e.message}"
  Hash.new(Float::NAN)
end

abort "puma is not installed (bin/setup installs it)" unless executable("puma")
names = %w[iodine puma]
names << "iodine-hijack" if ENV["BENCH_CABLE_HIJACK"] == "1"
runs = names.to_h { |n| [n, []] }
puts "Action Cable: #{CLIENTS} clients subscribed to one stream, #{ROUNDS} broadcasts per run, #{PAIRS} interleaved rounds"
PAIRS.times do |i|
  names.each do |name|
    r = run(name)
    runs[name] << r
    puts format("  round %d %-14s %6.1f MiB/1000  median %7.1f ms  %9s deliveries/s  %6.1f us CPU/delivery",
                i + 1, name, r["mib_per_1000"], r["median_ms"], rate(r["deliveries_per_sec"]), r["cpu_us"])
  end
end

puts
puts format("%-14s %14s %12s %16s %16s", "server", "MiB per 1,000", "delivery ms", "deliveries/s", "CPU us/delivery")
names.each do |name|
  m = ->(key) { median(runs[name].map { |r| r[key] }) }
  puts format("%-14s %14.1f %12.1f %16s %16.1f", name, m["mib_per_1000"], m["median_ms"], rate(m["deliveries_per_sec"]), m["cpu_us"])
end
puts
(names - ["iodine"]).each do |base|
  puts "iodine / #{base}: deliveries/s #{ratio(runs, 'iodine', base, 'deliveries_per_sec')}; " \
       "memory per 1,000 #{ratio(runs, 'iodine', base, 'mib_per_1000')}; CPU per delivery #{ratio(runs, 'iodine', base, 'cpu_us')}"
end

# The headline figures, for bench/RESULTS.md.
record_results("cable", [
  result_row("Action Cable broadcast", runs, "deliveries_per_sec", unit: "deliveries/s", others: { "puma" => "puma" },
             note: "#{rate(CLIENTS.to_f)} clients, #{ROUNDS} broadcasts per run; stock Action Cable on puma -t 4"),
  result_row("Action Cable memory", runs, "mib_per_1000", unit: "MiB per 1,000 clients", better: "lower",
             others: { "puma" => "puma" }),
  result_row("Action Cable CPU per delivery", runs, "cpu_us", unit: "µs CPU per delivery", better: "lower",
             others: { "puma" => "puma" })
])
