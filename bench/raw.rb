# frozen_string_literal: true

# Raw TCP echo benchmark: iodine -t 1 serving a raw listener (bench/raw_app.rb) against the
# same protocol in plain Ruby, a TCPServer with a thread per connection (bench/raw_threads.rb),
# run interleaved (A B A B …) with the server pinned to one core and the load tool
# (bench/wsload's raw mode, Rust) to the other. Prints every run, then the median of the
# per-pair ratios iodine/threads for each case.
#
#   rake bench_raw                     # builds bench/wsload, then runs this
#   BENCH_PAIRS=3 BENCH_SECONDS=5 ruby bench/raw.rb
#   BENCH_CASES=16 ruby bench/raw.rb   # only the cases whose name contains it
#   BENCH_CGEM=/path/to/iodine-0.7/lib ruby bench/raw.rb   # the C gem too (see below)
#
# Cases: 100 connections, each with one message of 64 B or 16 KiB in flight; a message counts
# once all its bytes came back (in any chunking), and the load tool checks every byte.
#
# The C gem (iodine 0.7, the one this gem replaces) is a third server when it is built here:
# BENCH_CGEM names the folders to put on the load path (its lib and its built extension,
# separated by ":"), or an installed iodine gem with C sources is used.

require "json"
require "rbconfig"
require "etc"
require "tmpdir"
require_relative "support"

ROOT = File.expand_path("..", __dir__)
PAIRS = Integer(ENV.fetch("BENCH_PAIRS", "3"))
SECONDS = Integer(ENV.fetch("BENCH_SECONDS", "5"))
ONLY = ENV["BENCH_CASES"]
SERVER_CPU = 0
LOAD_CPU = Etc.nprocessors > 1 ? 1 : 0
APP = File.join(__dir__, "raw_app.rb")

# Name, wsload raw-mode arguments (HOST becomes 127.0.0.1:port); the rate is msgs_per_sec.
CASES = [
  ["echo 64 B x 100", %w[--url tcp://HOST --clients 100 --size 64]],
  ["echo 16 KiB x 100", %w[--url tcp://HOST --clients 100 --size 16384]]
].freeze

# How to start each server on a port: [name, command].
def servers(c_gem_paths)
  list = {
    "iodine" => ->(port) { [RbConfig.ruby, "-I#{File.join(ROOT, 'lib')}", APP, port.to_s] },
    "threads" => ->(port) { [RbConfig.ruby, File.join(__dir__, "raw_threads.rb"), port.to_s] }
  }
  if c_gem_paths
    list["C gem"] = ->(port) { [RbConfig.ruby, *c_gem_paths.map { |d| "-I#{d}" }, APP, port.to_s] }
  end
  list
end

# One run of a case: [messages/s or NaN when the server or the tool failed, a note or nil].
def measure(name, command, args)
  port = free_port
  log = File.join(Dir.tmpdir, "bench-raw-#{Process.pid}-#{port}.log")
  note = nil
  result = with_pinned_server(command.call(port), port, cpu: SERVER_CPU, name: name, log: log) do |pid|
    run = wsload("raw", [*args, "--seconds", SECONDS.to_s], port, cpus: LOAD_CPU)
    # A server that exited under load is a crash, whatever the tool measured.
    if Process.waitpid(pid, Process::WNOHANG)
      note = "the server exited during the run (#{$?.inspect})"
      run = nil
    end
    run
  end
  if result.nil? || result["errors"].positive?
    note ||= result ? "#{result['errors']} client error(s)" : "no result"
    warn "  #{name}: #{note}; its log:\n#{log_tail(log)}"
  end
  [result ? result.fetch("msgs_per_sec").to_f : Float::NAN, note]
rescue RuntimeError => e # did not start
  warn "  #{e.message}:\n#{log_tail(log)}"
  [Float::NAN, e.message]
ensure
  File.delete(log) if log && File.exist?(log)
end

$stdout.sync = true # each run shows as it ends, also through a pipe
abort "bench: #{WSLOAD} is missing: rake bench_raw builds it" unless File.executable?(WSLOAD)
c_paths, why = c_gem
puts "bench: skipping the C gem (iodine 0.7): #{why}" if why
commands = servers(c_paths)
names = commands.keys

results = {}
CASES.each do |name, args|
  next if ONLY && !name.include?(ONLY)

  runs = names.to_h { |server| [server, []] }
  PAIRS.times do |i|
    # Alternate which goes first, so a drift within a pair favours neither.
    (i.even? ? names : names.reverse).each do |server|
      value, note = measure(server, commands.fetch(server), args)
      runs[server] << value
      puts format("  %-18s %-7s %12s msg/s%s", name, server, rate(value), note ? "  (#{note})" : "")
    end
  end
  results[name] = runs
end

unless results.empty?
  puts
  others = names - ["iodine"]
  header = format("%-18s %12s", "case (median)", "iodine")
  others.each { |o| header += format(" %12s %8s   %-16s", o, "ratio", "pair ratios") }
  puts header
  results.each do |name, runs|
    line = format("%-18s %12s", name, rate(median(runs["iodine"])))
    others.each do |other|
      ratios = runs["iodine"].zip(runs[other]).map { |a, b| a / b }
      pairs = ratios.map { |r| r.nan? ? "-" : format("%.2f", r) }.join(" ")
      ratio = median(ratios)
      line += format(" %12s %8s   %-16s", rate(median(runs[other])), ratio.nan? ? "-" : format("%.2fx", ratio), pairs)
    end
    puts line
  end
  puts "(messages/s echoed whole; ratio = the median of the per-pair ratios iodine/other)"
end

# The headline figures, for bench/RESULTS.md: msg/s per case against the C gem (else the
# threads).
record_results("raw", results.map do |name, runs|
  result_row("raw TCP #{name.sub(' x ', ' ×')}", runs, nil, unit: "msg/s", cgem: "C gem", others: { "threads" => "Ruby threads" })
end)
