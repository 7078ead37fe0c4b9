# frozen_string_literal: true

# Pub/sub fan-out benchmark for cluster mode: one publisher, and 100, 1,000 or 5,000
# subscribers over WebSocket or SSE, against iodine in one process (`-w 1 -t 1`), iodine in
# cluster mode (`-w 2 -t 1`: the master forks 2 workers, each with a socket of its own on the
# port, so the subscribers land on both and a message published in one worker reaches the other's
# subscribers through the master) and puma `-t 4` with faye-websocket (bench/faye_app.ru),
# run interleaved (A B C, C B A, …). The apps are bench/ws_app.ru and bench/faye_app.ru, as in
# bench/ws.rb. Prints every run, then per case the median messages delivered per second and
# the median p99 delivery latency, with the median of the per-pair ratios.
#
#   rake bench_cluster                 # builds bench/wsload, then runs this
#   BENCH_PAIRS=3 BENCH_SECONDS=5 ruby bench/cluster.rb
#   BENCH_CASES=SSE ruby bench/cluster.rb      # only the cases whose name contains it
#   BENCH_WS_BASE=none ruby bench/cluster.rb   # iodine only
#
# What is measured (wsload's fanout and sse modes): every subscriber is connected and
# confirmed ("ready") before the first message is published; the publisher then stays at most
# 64 messages ahead of the average subscriber (flow control, so this is the delivery rate at
# saturation), and the 1 s warm-up starts once those first 64 have been delivered (faye takes
# seconds to get them to 5,000 subscribers). Each message (32 bytes) carries its publish time and a sequence number: the
# latency is from just before the publisher writes it to when a subscriber reads it, over every
# delivery in the measured window, so at saturation it is mostly the 64-message queue
# (about 64 × subscribers ÷ delivered per second). Each run also checks that no subscriber
# missed a message or got none, and for -w 2 shows how the connections were spread over the
# workers (subscribers + the publisher, counted from /proc once all are connected; the
# subscribers connect 20 at a time, see PARALLEL).
#
# CPUs: every server gets the same core(s), BENCH_SERVER_CPUS (default 0: the master and both
# workers of -w 2 share it), and the load tool gets BENCH_LOAD_CPUS (default 1). On a 2-core
# machine the single-threaded load tool needs a core of its own (it reads up to 3 million
# messages/s), so -w 2 gets no more CPU than -w 1 here: the comparison shows what the cluster
# costs (routing through the master), not what a second core would add. With more cores, e.g.
# BENCH_SERVER_CPUS=0-1 BENCH_LOAD_CPUS=2.
#
# faye runs in puma's single mode: faye_app.ru keeps its subscribers in the process, so under
# puma -w 2 a message reaches only the subscribers of the worker the publisher landed on.
# Stopping puma + faye (TERM, after the measurement) sometimes ends in a segfault in
# EventMachine's release_machine: the run is noted, its numbers stand.
# The C gem (iodine 0.7) runs as iodine-C -w 1 and -w 2 when it is installed or BENCH_CGEM
# names its load path (see bench/raw.rb); otherwise it is skipped.

require "json"
require "rbconfig"
require "etc"
require "tmpdir"
require_relative "support"

ROOT = File.expand_path("..", __dir__)
PAIRS = Integer(ENV.fetch("BENCH_PAIRS", "3"))
SECONDS = Integer(ENV.fetch("BENCH_SECONDS", "5"))
BASE = ENV.fetch("BENCH_WS_BASE", "faye")
ONLY = ENV["BENCH_CASES"]
SERVER_CPUS = ENV.fetch("BENCH_SERVER_CPUS", "0")
LOAD_CPUS = ENV.fetch("BENCH_LOAD_CPUS", Etc.nprocessors > 1 ? "1" : "0")
APP = File.join(__dir__, "ws_app.ru")
# Subscribers connecting at once. The C gem's workers share one listener and the kernel wakes
# them all on a new connection: a burst of 200 at once (wsload's default) is mostly accepted
# by whichever worker runs first (on one core, often all of it), while 20 at a time spreads
# them over both, as clients arriving over time would be. (This gem's workers have a socket
# each, which spreads any burst; the same pace keeps the comparison fair.)
PARALLEL = 20

# The command of an iodine CLI (`exe`, with `load_path`) serving APP with `workers` processes.
def iodine(load_path, exe, workers)
  lambda do |port|
    [RbConfig.ruby, *load_path.map { |d| "-I#{d}" }, exe, "-V", "1", "-p", port.to_s, "-b", "127.0.0.1",
     "-w", workers.to_s, "-t", "1", APP]
  end
end

# Name, wsload mode and arguments (HOST becomes 127.0.0.1:port).
CASES = [["WS", "fanout", "ws://HOST/sub"], ["SSE", "sse", "http://HOST/sse"]].flat_map do |kind, mode, url|
  [100, 1000, 5000].map do |n|
    ["#{kind} fan-out x #{n}", mode,
     ["--url", url, "--publish", "ws://HOST/pub", "--subscribers", n.to_s, "--parallel", PARALLEL.to_s]]
  end
end.freeze

# The servers of this run: { name => ->(port) { command } }.
def servers
  lib = [File.join(ROOT, "lib")]
  exe = File.join(ROOT, "exe", "iodine")
  list = { "iodine-w1" => iodine(lib, exe, 1), "iodine-w2" => iodine(lib, exe, 2) }
  c_paths, c_exe, why = c_gem_server
  if why
    puts "bench: skipping the C gem (iodine 0.7): #{why}"
  else
    list["iodine-C-w1"] = iodine(c_paths, c_exe, 1)
    list["iodine-C-w2"] = iodine(c_paths, c_exe, 2)
  end
  if BASE == "faye"
    if (missing = faye_missing)
      puts "bench: skipping the puma + faye baseline: #{missing}"
    else
      list["faye"] = lambda do |port|
        ["puma", "-q", "-b", "tcp://127.0.0.1:#{port}", "-t", "4:4", "-w", "0", File.join(__dir__, "faye_app.ru")]
      end
    end
  elsif BASE != "none"
    abort "bench: BENCH_WS_BASE must be faye or none (got #{BASE.inspect})"
  end
  list
end

# Log excerpts already shown, by server (addresses and numbers left out).
SHOWN = Hash.new { |h, k| h[k] = {} }

# Warns of `notes` about `server`, with the excerpt of its log unless the same was shown before.
def warn_once(server, notes, excerpt)
  key = excerpt.gsub(/0x\h+|\d+/, "N")
  if SHOWN[server][key]
    warn "  #{server}: #{notes.join('; ')} (its log as above)"
  else
    SHOWN[server][key] = true
    warn "  #{server}: #{notes.join('; ')}; its log:\n#{excerpt}"
  end
end

# What looks wrong in wsload's result for `wanted` subscribers: a list of notes.
def problems(result, wanted)
  notes = []
  got = result["subscribers"]
  notes << "only #{got} of #{wanted} subscribers connected" if got < wanted
  notes << "#{result['starved']} subscriber(s) got nothing in the window" if result["starved"].positive?
  notes << "#{result['lost']} message(s) missed by subscribers" if result["lost"].positive?
  notes << "#{result['disordered']} message(s) out of order or twice" if result["disordered"].positive?
  notes << "#{result['unstamped']} message(s) not from the publisher" if result["unstamped"].positive?
  notes << "#{result['errors']} wsload error(s)" if result["errors"].positive?
  notes
end

# One run: { rate:, p50:, p99: (NaN when the server or the tool failed), split:, notes: }.
def measure(name, command, mode, args)
  port = free_port
  log = File.join(Dir.tmpdir, "bench-cluster-#{Process.pid}-#{port}.log")
  wanted = Integer(args[args.index("--subscribers") + 1])
  run = { rate: Float::NAN, p50: Float::NAN, p99: Float::NAN, split: nil, notes: [] }
  with_pinned_server(command.call(port), port, cpu: SERVER_CPUS, env: { "RACK_ENV" => "production" },
                                               name: name, log: log) do |pid|
    workers = []
    result = wsload(mode, [*args, "--seconds", SECONDS.to_s], port, cpus: LOAD_CPUS) do |line|
      next unless line.include?('"subscribed"')

      # Everyone is connected: where did the connections land?
      workers = children(pid)
      run[:split] = connections_by_process(workers, port).values unless workers.empty?
    end
    if run[:split] && run[:split].min <= 1
      run[:notes] << "a worker got no subscribers (#{run[:split].join('/')}): cross-worker delivery only partly measured"
    end
    # A server (or a worker) that exited under load is a crash, whatever the tool measured.
    if Process.waitpid(pid, Process::WNOHANG)
      run[:notes] << "the server exited during the run (#{$?.inspect})"
    else
      gone = workers.reject { |w| File.exist?("/proc/#{w}") }
      run[:notes] << "worker(s) #{gone.join(', ')} exited during the run" unless gone.empty?
    end
    if result
      run.merge!(rate: result.fetch("delivered_per_sec").to_f, p50: result.fetch("p50_us") / 1000.0,
                 p99: result.fetch("p99_us") / 1000.0)
      run[:notes].concat(problems(result, wanted))
    else
      run[:notes] << "no result"
    end
  end
  # How it stopped (with_pinned_server reaped it last): on TERM, iodine exits 0 and puma dies of
  # TERM; anything else (a crash on the way out, KILL after 10 s) is worth a look.
  stopped = $?
  if stopped && !stopped.success? && stopped.termsig != Signal.list["TERM"]
    how = stopped.signaled? ? "died of SIG#{Signal.signame(stopped.termsig)}" : "exited with #{stopped.exitstatus}"
    run[:notes] << "stopping, the server #{how}#{' (not stopped 10 s after TERM)' if stopped.termsig == Signal.list['KILL']}"
  end
  warn_once(name, run[:notes], log_tail(log)) unless run[:notes].empty?
  run
rescue RuntimeError => e # did not start
  warn "  #{e.message}:\n#{log_tail(log)}"
  run[:notes] << e.message
  run
ensure
  File.delete(log) if log && File.exist?(log)
end

# Milliseconds for the table, or "failed".
def ms(value)
  return "failed" if value.nan?

  value >= 100 ? format("%.0f", value) : format("%.#{value >= 10 ? 1 : 2}f", value)
end

$stdout.sync = true # each run shows as it ends, also through a pipe
abort "bench: #{WSLOAD} is missing: rake bench_cluster builds it" unless File.executable?(WSLOAD)
commands = servers
names = commands.keys
puts "bench: servers on CPU #{SERVER_CPUS}, wsload on CPU #{LOAD_CPUS}; #{PAIRS} pair(s) of #{SECONDS} s runs"

# Every server inherits the hard open-files limit (5,000 subscribers, and wsload holds them too).
_, hard = Process.getrlimit(:NOFILE)
Process.setrlimit(:NOFILE, hard, hard)

results = {}
CASES.each do |name, mode, args|
  next if ONLY && !name.include?(ONLY)

  runs = names.to_h { |server| [server, []] }
  PAIRS.times do |i|
    # Alternate the order, so a drift within a pair favours none.
    (i.even? ? names : names.reverse).each do |server|
      run = measure(server, commands.fetch(server), mode, args)
      runs[server] << run
      split = run[:split] ? "  per worker #{run[:split].join('/')}" : ""
      flag = run[:notes].empty? ? "" : "  (#{run[:notes].join('; ')})"
      puts format("  %-18s %-11s %11s /s  p50 %7s ms  p99 %7s ms%s%s",
                  name, server, rate(run[:rate]), ms(run[:p50]), ms(run[:p99]), split, flag)
    end
  end
  results[name] = runs
end

unless results.empty?
  # Each iodine against the baseline (faye, or iodine-w1 without it), and -w 2 against -w 1.
  base = names.include?("faye") ? "faye" : nil
  pairs = names.reject { |n| n == base }.filter_map { |n| [n, base] if base }
  pairs += names.grep(/-w2\z/).map { |n| [n, n.sub(/-w2\z/, "-w1")] }
  [["delivered/s (median)", :rate, method(:rate)], ["p99 ms (median)", :p99, method(:ms)]].each do |title, metric, show|
    puts
    puts format("%-20s", title) + names.map { |n| format(" %12s", n) }.join +
         pairs.map { |a, b| format("   %-22s", "#{a}/#{b}") }.join
    results.each do |name, runs|
      puts format("%-20s", name) + names.map { |n| format(" %12s", show.call(median(runs[n].map { |r| r[metric] }))) }.join +
           pairs.map { |a, b| format("   %-22s", ratio(runs, a, b, metric)) }.join
    end
  end
  puts "(a/b: the median of the per-pair ratios, each pair's in brackets; delivered/s: higher is " \
       "better, p99: lower is better)"
end

# The headline figures, for bench/RESULTS.md: iodine -w 1's delivered/s per case against the
# C gem -w 1 (else puma + faye), with p99 and what -w 2 keeps of -w 1 in the notes.
rows = results.map do |name, runs|
  p99 = ->(server) { runs[server] && median(runs[server].map { |r| r[:p99] }).then { |v| v.nan? ? nil : ms(v) } }
  w2 = runs["iodine-w2"] && pair_note(runs, "iodine-w2", "iodine-w1", :rate)
  ours_p99 = p99.call("iodine-w1")
  faye_p99 = p99.call("faye")
  result_row("cluster #{name.sub(' x ', ' ×')}", runs, :rate, unit: "delivered/s", ours: "iodine-w1",
             cgem: "iodine-C-w1", others: { "faye" => "puma + faye" },
             note: [ours_p99 && "p99 #{ours_p99} ms", faye_p99 && "puma + faye #{faye_p99} ms", w2 && "-w 2 #{w2} of -w 1"])
end
record_results("cluster", rows)
