# frozen_string_literal: true

# Redis pub/sub benchmark: two iodine servers (two "machines", `-w 1 -t 1`, each on its own
# port) share one redis-server (`-r redis://…`, so `Iodine.publish` goes through Redis); N
# WebSocket subscribers on each server (N = 100 and 1,000) subscribe to one channel, and one
# publisher publishes to it. This gem against the C gem (iodine 0.7) and its Redis engine,
# run interleaved (A B, B A, …): for each case, the median of the per-pair ratios of
# messages delivered per second (over both servers' subscribers), of the p99 delivery latency
# and of the servers' CPU time per delivered message.
#
#   rake bench_redis                   # builds bench/wsload, then runs this
#   BENCH_PAIRS=3 BENCH_SECONDS=5 ruby bench/redis.rb
#   BENCH_CASES=1000 ruby bench/redis.rb      # only the cases whose name contains it
#   BENCH_PUBLISH=redis ruby bench/redis.rb   # publish straight to Redis (see below)
#
# Both servers run bench/ws_app.ru, the app of bench/ws.rb and bench/cluster.rb (the same
# file runs on both gems): /sub subscribes the WebSocket to "bench" without a block (the
# message goes to the socket as it is) and sends "ready"; each message sent to /pub is
# `Iodine.publish("bench", message)`.
#
# The publisher (wsload's fanout mode, with --url naming both servers): by default a WebSocket
# to the first server's /pub, so each message goes app → Iodine.publish → Redis PUBLISH →
# both servers' SUBSCRIBE connections → their subscribers, and the first server must not
# deliver its own message twice (once locally, once from Redis). BENCH_PUBLISH=redis publishes
# straight to Redis instead (pipelined PUBLISH on a raw socket): only the servers' receiving
# side is measured, both servers alike. Either way, each message (32 bytes) carries its
# publish time and a sequence number, the publisher stays at most 64 messages ahead of the
# average subscriber (so this is the delivery rate at saturation, and the latency is mostly
# that queue, about 64 × subscribers ÷ delivered per second), and publishing starts only once
# every subscriber got "ready" and both servers have subscribed the channel in Redis (PUBSUB
# NUMSUB). After the measured window the publisher stops and every subscriber must get every
# message published during the whole run (prime, warm-up, window), exactly once: "lost" counts
# the (subscriber, message) pairs missing 10 s after the last publish, "dup" the copies.
#
# CPUs: both servers share BENCH_SERVER_CPUS (default 0); the load tool and redis-server share
# BENCH_LOAD_CPUS (default 1). The servers' CPU time (utime + stime from /proc/PID/stat of
# each server and its child processes, over the measured window) per delivered message is
# reported too, and each run prints the share of a core the servers, the load tool and Redis
# used in the window: on 2 cores the load tool may be the limit (servers well under 100% would
# say so). Over loopback, the kernel's receiving side of each TCP write runs in the writer's
# context, so the servers' CPU includes part of what the subscribers' reads cost.
#
# Each run starts its own redis-server on a free port (--save '' --appendonly no) and stops it
# after. Each run prints each server's RSS in MiB (with its children) as the window opened, as
# it closed and after the subscribers left ("start>end>after", server A / server B), and
# Redis's after the run. The servers run at -V 3: any line they log (a warning or an error) is
# shown and flagged, as is Redis closing a client for its output buffer.
#
# The C gem runs when it is installed, BENCH_CGEM names its load path, or
# ../shared/tools/build-c-iodine.sh built it in /tmp/anchors/iodine (see bench/support.rb's
# c_gem); otherwise only this gem runs. Its AUTH is broken, so no password is used.

require "json"
require "rbconfig"
require "etc"
require "tmpdir"
require_relative "support"

ROOT = File.expand_path("..", __dir__)
PAIRS = Integer(ENV.fetch("BENCH_PAIRS", "3"))
SECONDS = Integer(ENV.fetch("BENCH_SECONDS", "5"))
ONLY = ENV["BENCH_CASES"]
PUBLISH = ENV.fetch("BENCH_PUBLISH", "server")
SERVER_CPUS = ENV.fetch("BENCH_SERVER_CPUS", "0")
LOAD_CPUS = ENV.fetch("BENCH_LOAD_CPUS", Etc.nprocessors > 1 ? "1" : "0")
APP = File.join(__dir__, "ws_app.ru")
CHANNEL = "bench"
# How long, after the last publish, every subscriber may take to get every message.
DRAIN = 10

# Name and subscribers per server.
CASES = [100, 1000].map { |n| ["x #{n} per server", n] }.freeze

# The command of an iodine CLI (`exe`, with `load_path`) serving APP on `port` through the
# Redis on `redis_port`.
def iodine(load_path, exe)
  lambda do |port, redis_port|
    [RbConfig.ruby, *load_path.map { |d| "-I#{d}" }, exe, "-V", "3", "-p", port.to_s, "-b", "127.0.0.1",
     "-w", "1", "-t", "1", "-r", "redis://127.0.0.1:#{redis_port}", APP]
  end
end

# The servers of this run: { name => ->(port, redis_port) { command } }.
def servers
  list = { "iodine" => iodine([File.join(ROOT, "lib")], File.join(ROOT, "exe", "iodine")) }
  c_paths, c_exe, why = c_gem_server
  if why
    puts "bench: skipping the C gem (iodine 0.7): #{why}"
  else
    list["iodine-C"] = iodine(c_paths, c_exe)
  end
  list
end

# The wsload process among our children (IO.popen's pid is not exposed by `wsload`).
def wsload_pid
  children(Process.pid).find { |p| File.read("/proc/#{p}/comm").strip == "wsload" rescue false } # rubocop:disable Style/RescueModifier
end

# Serves `command` on `port` (pinned to `cpus`, output to `log`) for the block; returns the
# block's value and a note when the process exited during the block or did not stop cleanly
# on TERM.
def serving(name, command, port, cpus, log, notes)
  result = with_pinned_server(command, port, cpu: cpus, env: { "RACK_ENV" => "production" }, name: name, log: log) do |pid|
    value = yield pid
    notes << "#{name} exited during the run (#{$?.inspect})" if Process.waitpid(pid, Process::WNOHANG)
    value
  end
  stopped = $?
  if stopped && !stopped.success? && stopped.termsig != Signal.list["TERM"]
    how = stopped.signaled? ? "died of SIG#{Signal.signame(stopped.termsig)}" : "exited with #{stopped.exitstatus}"
    notes << "stopping, #{name} #{how}"
  end
  result
end

# What looks wrong in wsload's result for `wanted` subscribers: a list of notes.
def problems(result, wanted)
  notes = []
  notes << "only #{result['subscribers']} of #{wanted} subscribers connected" if result["subscribers"] < wanted
  notes << "#{result['starved']} subscriber(s) got nothing in the window" if result["starved"].positive?
  notes << "#{result['missing']} deliveries lost" if result["missing"].positive?
  notes << "#{result['duplicated']} deliveries duplicated" if result["duplicated"].positive?
  notes << "#{result['disordered']} message(s) out of order" if result["disordered"] > result["duplicated"]
  notes << "#{result['unstamped']} message(s) not from the publisher" if result["unstamped"].positive?
  notes << "#{result['errors']} wsload error(s)" if result["errors"].positive?
  if result["redis_receivers_least"]&.< 2
    notes << "a PUBLISH reached #{result['redis_receivers_least']} Redis subscriber(s), not 2"
  end
  notes
end

# Lines of a log worth a look: the servers run at -V 3 (warnings and errors), so any line is.
def log_notes(name, log, notes)
  lines = File.exist?(log) ? File.readlines(log, chomp: true).reject(&:empty?) : []
  return if lines.empty?

  notes << "#{name} logged #{lines.size} line(s)"
  warn "  #{name}'s log:\n#{lines.first(8).map { |l| "    | #{l}" }.join("\n")}"
end

# One run of `gem` with `per_server` subscribers on each server: { rate:, p99:, cpu_us:,
# load:, redis:, lost:, dup:, rss:, redis_rss:, notes: } (NaN where it failed).
def measure(gem, command, per_server)
  run = { rate: Float::NAN, p99: Float::NAN, cpu_us: Float::NAN, servers: Float::NAN, load: Float::NAN,
          redis: Float::NAN, lost: Float::NAN, dup: Float::NAN, rss: nil, redis_rss: Float::NAN, notes: [] }
  ports = [free_port, free_port]
  redis_port = free_port
  logs = ["a", "b", "redis"].map { |s| File.join(Dir.tmpdir, "bench-redis-#{Process.pid}-#{redis_port}-#{s}.log") }
  redis_cmd = ["redis-server", "--port", redis_port.to_s, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
  serving("redis-server", redis_cmd, redis_port, LOAD_CPUS, logs[2], run[:notes]) do |redis_pid|
    serving("#{gem} A", command.call(ports[0], redis_port), ports[0], SERVER_CPUS, logs[0], run[:notes]) do |a|
      serving("#{gem} B", command.call(ports[1], redis_port), ports[1], SERVER_CPUS, logs[1], run[:notes]) do |b|
        result = drive(run, per_server, ports, redis_port, [a, b], redis_pid)
        run[:rss] = [rss_mb(a), rss_mb(b)] # after the publisher stopped and the subscribers left
        run[:redis_rss] = rss_mb(redis_pid)
        result
      end
    end
  end
  log_notes("#{gem} A", logs[0], run[:notes])
  log_notes("#{gem} B", logs[1], run[:notes])
  # Redis closes a subscriber that falls too far behind (client-output-buffer-limit pubsub).
  if File.exist?(logs[2]) && (killed = File.readlines(logs[2]).grep(/output buffer|overcoming/i)).any?
    run[:notes] << "Redis closed a client for its output buffer: #{killed.first.strip}"
  end
  run
rescue RuntimeError => e # did not start
  run[:notes] << e.message
  run
ensure
  logs&.each { |l| File.delete(l) if File.exist?(l) }
end

# Runs wsload against the two servers (`pids` on `ports`) and fills `run`.
def drive(run, per_server, ports, redis_port, pids, redis_pid)
  channel = "redis://127.0.0.1:#{redis_port}/#{CHANNEL}"
  publish = PUBLISH == "redis" ? channel : "ws://127.0.0.1:#{ports[0]}/pub"
  args = ["--url", ports.map { |p| "ws://127.0.0.1:#{p}/sub" }.join(","), "--publish", publish,
          "--redis", channel, "--subscribers", per_server.to_s, "--seconds", SECONDS.to_s, "--drain", DRAIN.to_s]
  start = nil
  tool = nil
  result = wsload("fanout", args, ports[0], cpus: LOAD_CPUS) do |line|
    if line.include?('"window":"start"')
      tool = wsload_pid
      start = [Process.clock_gettime(Process::CLOCK_MONOTONIC), cpu_seconds(pids), cpu_seconds([redis_pid]),
               tool ? cpu_seconds([tool]) : Float::NAN]
    elsif line.include?('"window":"end"') && start
      now = [Process.clock_gettime(Process::CLOCK_MONOTONIC), cpu_seconds(pids), cpu_seconds([redis_pid]),
             tool ? cpu_seconds([tool]) : Float::NAN]
      wall = now[0] - start[0]
      run[:servers], run[:redis], run[:load] = (1..3).map { |i| (now[i] - start[i]) / wall }
      run[:rss_end] = pids.map { |p| rss_mb(p) }
    end
    run[:rss_start] = pids.map { |p| rss_mb(p) } if line.include?('"window":"start"')
  end
  unless result
    run[:notes] << "no result"
    return
  end
  run.merge!(rate: result.fetch("delivered_per_sec").to_f, p99: result.fetch("p99_us") / 1000.0,
             lost: result.fetch("missing").to_f, dup: result.fetch("duplicated").to_f)
  run[:cpu_us] = run[:servers] / run[:rate] * 1e6
  run[:notes].concat(problems(result, 2 * per_server))
end

# Each server's RSS (MiB) as the window opened, as it closed, and after the run: "a>a>a/b>b>b".
def memory(run)
  samples = [run[:rss_start], run[:rss_end], run[:rss]].map { |s| s || [Float::NAN, Float::NAN] }
  samples.transpose.map { |mibs| mibs.map { |m| format("%.0f", m) }.join(">") }.join("/")
end

# Milliseconds for the table, or "failed".
def ms(value)
  return "failed" if value.nan?

  value >= 100 ? format("%.0f", value) : format("%.#{value >= 10 ? 1 : 2}f", value)
end

# A small number for the table (µs, a count), or "failed".
def num(value)
  return "failed" if value.nan?

  value >= 100 || value.zero? ? format("%.0f", value) : format("%.2f", value)
end

$stdout.sync = true # each run shows as it ends, also through a pipe
abort "bench: #{WSLOAD} is missing: rake bench_redis builds it" unless File.executable?(WSLOAD)
abort "bench: redis-server is missing (apt install redis-server)" unless system("which redis-server > /dev/null")
abort "bench: BENCH_PUBLISH must be server or redis (got #{PUBLISH.inspect})" unless %w[server redis].include?(PUBLISH)
commands = servers
names = commands.keys
puts "bench: servers on CPU #{SERVER_CPUS}, wsload and redis-server on CPU #{LOAD_CPUS}; publishing " \
     "#{PUBLISH == 'redis' ? 'straight to Redis' : "through the first server's /pub"}; " \
     "#{PAIRS} pair(s) of #{SECONDS} s runs"

# Every server inherits the hard open-files limit (2,000 subscribers, and wsload holds them too).
_, hard = Process.getrlimit(:NOFILE)
Process.setrlimit(:NOFILE, hard, hard)

results = {}
CASES.each do |name, per_server|
  next if ONLY && !name.include?(ONLY)

  runs = names.to_h { |gem| [gem, []] }
  PAIRS.times do |i|
    # Alternate the order, so a drift within a pair favours neither.
    (i.even? ? names : names.reverse).each do |gem|
      run = measure(gem, commands.fetch(gem), per_server)
      runs[gem] << run
      flag = run[:notes].empty? ? "" : "  (#{run[:notes].join('; ')})"
      puts format("  %-16s %-9s %10s /s  p99 %6s ms  %5s us/delivery  lost %s dup %s  CPU: servers %3.0f%% " \
                  "wsload %3.0f%% redis %3.0f%%  RSS MiB %s + redis %.1f%s",
                  name, gem, rate(run[:rate]), ms(run[:p99]), num(run[:cpu_us]), num(run[:lost]), num(run[:dup]),
                  run[:servers] * 100, run[:load] * 100, run[:redis] * 100, memory(run), run[:redis_rss], flag)
    end
  end
  results[name] = runs
end

unless results.empty?
  pair = names.size == 2 ? names : nil
  [["delivered/s (median)", :rate, method(:rate)], ["p99 ms (median)", :p99, method(:ms)],
   ["server CPU us/delivery", :cpu_us, method(:num)]].each do |title, metric, show|
    puts
    puts format("%-22s", title) + names.map { |n| format(" %12s", n) }.join +
         (pair ? format("   %-22s", pair.join("/")) : "")
    results.each do |name, runs|
      puts format("%-22s", name) + names.map { |n| format(" %12s", show.call(median(runs[n].map { |r| r[metric] }))) }.join +
           (pair ? format("   %-22s", ratio(runs, *pair, metric)) : "")
    end
  end
  puts
  puts format("%-22s", "lost / duplicated") + names.map { |n| format(" %12s", n) }.join + "   (all runs, summed)"
  results.each do |name, runs|
    counts = names.map { |n| format(" %12s", "#{num(runs[n].sum { |r| r[:lost] })} / #{num(runs[n].sum { |r| r[:dup] })}") }
    puts format("%-22s", name) + counts.join
  end
  puts "(a/b: the median of the per-pair ratios, each pair's in brackets; delivered/s: higher is " \
       "better, p99 and CPU per delivery: lower is better)"
end

# The headline figures, for bench/RESULTS.md (a file per way of publishing): delivered/s per
# case against the C gem, with p99 and the server CPU per delivery in the notes.
how = PUBLISH == "redis" ? "PUBLISH to Redis" : "via /pub"
record_results(PUBLISH == "redis" ? "redis_direct" : "redis", results.map do |name, runs|
  figure = lambda do |metric, show|
    values = names.filter_map do |gem|
      value = median(runs[gem].map { |r| r[metric] })
      "#{gem == 'iodine' ? '' : 'C gem '}#{show.call(value)}" unless value.nan?
    end
    values.empty? ? nil : values.join(" vs ")
  end
  p99 = figure.call(:p99, method(:ms))
  cpu = figure.call(:cpu_us, method(:num))
  lost = names.sum { |gem| runs[gem].sum { |r| r[:lost].nan? ? 0 : r[:lost] + r[:dup] } }
  result_row("Redis pub/sub #{name.sub('x ', '×')} (#{how})", runs, :rate, unit: "delivered/s", cgem: "iodine-C",
             note: [p99 && "p99 #{p99} ms", cpu && "server CPU #{cpu} µs per delivery",
                    lost.zero? ? "none lost or duplicated" : "#{num(lost.to_f)} lost or duplicated"])
end)
