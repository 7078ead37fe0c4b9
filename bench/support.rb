# frozen_string_literal: true

# What the benchmark scripts share: free ports, a server pinned to a core for one run, its
# resident memory and its connections per process, where the C gem (iodine 0.7) is, nginx's
# configuration, a self-signed certificate, a load tool run pinned to a core, and the medians
# and rates of the result tables.

require "json"
require "rbconfig"
require "socket"
require "etc"

# Clock ticks per second of /proc/PID/stat's CPU times.
TICK = Etc.sysconf(Etc::SC_CLK_TCK).to_f

# A TCP port nobody listens on right now.
def free_port
  s = TCPServer.new("127.0.0.1", 0)
  s.addr[1]
ensure
  s&.close
end

# Waits (up to 10 s) until `port` accepts; false if the server process `pid` exited first.
def wait_for(port, pid)
  100.times do
    TCPSocket.new("127.0.0.1", port).close
    return true
  rescue Errno::ECONNREFUSED
    return false if Process.waitpid(pid, Process::WNOHANG)

    sleep 0.1
  end
  false
end

# Starts `cmd` (which listens on `port`) pinned to `cpu`, yields its pid once it accepts, and
# stops it (and its process group) afterwards: TERM, then KILL if it is still there 10 s later.
# The server's output goes to `log` (a path; none by default).
def with_pinned_server(cmd, port, cpu:, env: {}, name: cmd.first, log: File::NULL)
  pid = Process.spawn(env, "taskset", "-c", cpu.to_s, *cmd, out: log, err: %i[child out], pgroup: true)
  raise "#{name} did not start" unless wait_for(port, pid)

  yield pid
ensure
  if pid
    Process.kill("TERM", -pid) rescue nil # rubocop:disable Style/RescueModifier
    reap(pid, 10)
  end
end

# Waits up to `seconds` for `pid` to exit, then kills its process group and waits for it.
def reap(pid, seconds)
  (seconds * 10).times do
    return if Process.waitpid(pid, Process::WNOHANG)

    sleep 0.1
  end
  Process.kill("KILL", -pid)
  Process.wait(pid)
rescue Errno::ECHILD, Errno::ESRCH
  nil
end

# Resident memory of `pid` plus its direct children, in MiB (NaN once it is gone).
def rss_mb(pid)
  kb = File.read("/proc/#{pid}/status")[/VmRSS:\s+(\d+)/, 1].to_i
  Dir.glob("/proc/[0-9]*/stat").each do |stat|
    fields = File.read(stat).split
    kb += File.read(stat.sub("stat", "status"))[/VmRSS:\s+(\d+)/, 1].to_i if fields[3].to_i == pid
  rescue Errno::ENOENT, Errno::ESRCH
    next
  end
  kb / 1024.0
rescue Errno::ENOENT
  Float::NAN
end

# Where ../shared/tools/build-c-iodine.sh builds the C gem by default (its lib/ holds the
# extension too).
C_GEM_BUILT = "/tmp/anchors/iodine"

# The load path of a built C gem (iodine 0.7), or nil with the reason it is not available:
# BENCH_CGEM, else an installed iodine 0.7 gem, else the build script's C_GEM_BUILT.
def c_gem
  if (paths = ENV["BENCH_CGEM"])
    dirs = paths.split(":")
    missing = dirs.reject { |d| File.directory?(d) }
    return [nil, "BENCH_CGEM names missing folders: #{missing.join(', ')}"] unless missing.empty?

    return [dirs, nil]
  end
  spec = Gem::Specification.find_all_by_name("iodine").find do |s|
    s.version.segments.first(2) == [0, 7] && s.files.any? { |f| f.end_with?(".c") }
  end
  return [spec.full_require_paths, nil] if spec

  built = File.join(C_GEM_BUILT, "lib")
  return [[built], nil] if File.file?(File.join(built, "iodine", "iodine_ext.so"))

  [nil, "it is not installed here (gem install iodine -v '~> 0.7', ../shared/tools/build-c-iodine.sh " \
        "GIT_DIR (builds it in #{C_GEM_BUILT}), or BENCH_CGEM=its lib:its extension folder)"]
end


# The C gem's `iodine` executable (exe/ or bin/ beside one of its load-path folders), or nil.
def c_gem_exe(paths)
  paths.flat_map { |d| %w[exe bin].map { |b| File.expand_path(File.join(d, "..", b, "iodine")) } }
       .find { |f| File.file?(f) }
end

# The C gem's load path and `iodine` executable, and why it can't run (nil when it can).
def c_gem_server
  c_paths, why = c_gem
  c_exe = c_paths && c_gem_exe(c_paths)
  why ||= "no exe/iodine beside #{c_paths.join(', ')}" if c_paths && !c_exe
  [c_paths, c_exe, why]
end

# The full path of the executable `name` on PATH or in the sbin folders (nginx lives in
# /usr/sbin, which a non-root PATH may lack), or nil.
def executable(name)
  dirs = ENV.fetch("PATH", "").split(File::PATH_SEPARATOR) + %w[/usr/local/sbin /usr/sbin /sbin]
  dirs.map { |d| File.join(d, name) }.find { |f| File.file?(f) && File.executable?(f) }
end

# The version of the nginx at `nginx` as [major, minor, patch] (`nginx -v` prints it on stderr).
def nginx_version(nginx)
  text = IO.popen([nginx, "-v"], err: %i[child out], &:read)
  (text[%r{nginx/([\d.]+)}, 1] || "0").split(".").map(&:to_i)
end

# The `listen` line (and the HTTP/2 switch) of an nginx server on 127.0.0.1:`port`: plain
# HTTP/1.1, or, with `tls`, TLS serving h2 by ALPN. nginx 1.25.1 made `http2 on;` the switch
# and deprecated the `http2` parameter of `listen`, which older ones (Debian 12: 1.22) need.
def nginx_listen(nginx, port, tls)
  return "listen 127.0.0.1:#{port};" unless tls
  return "listen 127.0.0.1:#{port} ssl;\n    http2 on;" if (nginx_version(nginx) <=> [1, 25, 1]) >= 0

  "listen 127.0.0.1:#{port} ssl http2;"
end

# An nginx configuration serving `public` on 127.0.0.1:`port` (with `tls`, [cert, key]: over
# TLS with h2), with every file it writes (pid, lock, error log, temp folders) inside `dir`,
# so it runs without touching /var.
def nginx_conf(nginx, dir, public, port, tls: nil)
  # Run as root, nginx's worker would switch to `nobody`, who can't read the private temp
  # folder: keep the worker as the user running this (as another user the line is ignored
  # with a warning, so it is only written for root).
  user = Process.uid.zero? ? "user #{Etc.getpwuid(Process.uid).name} #{Etc.getgrgid(Process.gid).name};" : ""
  temps = %w[client_body proxy fastcgi uwsgi scgi].map { |t| "  #{t}_temp_path \"#{dir}/nginx-#{t}\";" }
  # TLS 1.3 as well: nginx before 1.23.4 offers only up to TLS 1.2 by default.
  certificate = tls ? "\n    ssl_certificate \"#{tls[0]}\";\n    ssl_certificate_key \"#{tls[1]}\";" \
                      "\n    ssl_protocols TLSv1.2 TLSv1.3;" : ""
  <<~CONF.lstrip
    #{user}
    daemon off;
    worker_processes 1;
    pid "#{dir}/nginx.pid";
    lock_file "#{dir}/nginx.lock";
    error_log "#{dir}/nginx-error.log" warn;
    events { worker_connections 1024; }
    http {
      types { text/plain txt; application/octet-stream bin; }
      default_type application/octet-stream;
      access_log off;
      sendfile on;
      tcp_nopush on;
      gzip_static on;
      # wrk keeps its connections: don't close each after nginx's default 1,000 requests.
      keepalive_requests 1000000;
    #{temps.join("\n")}
      server {
        #{nginx_listen(nginx, port, tls)}#{certificate}
        root "#{public}";
      }
    }
  CONF
end

# Writes nginx_conf's configuration for `port` into `dir` and returns the command that runs
# `nginx` (its path) with it, in the foreground.
def nginx_command(nginx, dir, public, port, tls: nil)
  conf = File.join(dir, "nginx-#{port}.conf")
  File.write(conf, nginx_conf(nginx, dir, public, port, tls: tls))
  [nginx, "-p", "#{dir}/", "-e", File.join(dir, "nginx-error.log"), "-c", conf]
end

# Makes a self-signed certificate (CN=localhost, SAN localhost and 127.0.0.1, valid 2 days)
# in `dir` with openssl: ECDSA P-256, or RSA 2048 when `type` is "rsa". Returns [cert, key]
# (their paths); aborts if openssl fails.
def self_signed_cert(dir, type = "ec")
  cert = File.join(dir, "cert.pem")
  key = File.join(dir, "key.pem")
  new_key = type == "rsa" ? ["rsa:2048"] : ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
  out = IO.popen(["openssl", "req", "-x509", "-newkey", *new_key, "-nodes", "-days", "2", "-subj", "/CN=localhost",
                  "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                 err: %i[child out], &:read)
  abort "bench: openssl could not make the certificate:\n#{out}" unless $?.success?

  [cert, key]
end

# Runs the load tool `cmd` pinned to `cpu` and waits for it; returns [its output (stderr
# included), the CPU seconds it used].
def run_pinned(cmd, cpu:, env: {})
  t0 = Process.times
  out = IO.popen(env, ["taskset", "-c", cpu.to_s, *cmd], err: %i[child out], &:read)
  t1 = Process.times
  [out, (t1.cutime + t1.cstime) - (t0.cutime + t0.cstime)]
end

# The ids of the processes whose parent is `pid`.
def children(pid)
  Dir.glob("/proc/[0-9]*/stat").filter_map do |stat|
    fields = File.read(stat).split
    fields[0].to_i if fields[3].to_i == pid
  rescue Errno::ENOENT, Errno::ESRCH
    nil
  end
end

# `pid` and its descendants.
def tree(pid)
  [pid, *children(pid).flat_map { |c| tree(c) }]
end

# CPU seconds (user + system) used so far by `pids` and their descendants still running.
def cpu_seconds(pids)
  pids.flat_map { |p| tree(p) }.uniq.sum do |p|
    # The fields after the command (which may hold spaces): utime and stime are the 12th and 13th.
    fields = File.read("/proc/#{p}/stat").split(") ", 2).last.split
    (fields[11].to_i + fields[12].to_i) / TICK
  rescue Errno::ENOENT, Errno::ESRCH
    0
  end
end

# Context switches (voluntary and not) of every thread of `pids` and their descendants so far.
def context_switches(pids)
  pids.flat_map { |p| tree(p) }.uniq.sum do |p|
    Dir.glob("/proc/#{p}/task/*/status").sum do |status|
      File.read(status).scan(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/).sum { |(n)| n.to_i }
    rescue Errno::ENOENT, Errno::ESRCH
      0
    end
  end
end

# Established TCP connections accepted on `port`, per process: { pid => count } for `pids`.
def connections_by_process(pids, port)
  inodes = {}
  %w[/proc/net/tcp /proc/net/tcp6].each do |table|
    File.foreach(table).drop(1).each do |line|
      fields = line.split
      # local address "HEX_IP:HEX_PORT", state 01 = ESTABLISHED, inode
      inodes[fields[9]] = true if fields[3] == "01" && fields[1].end_with?(format(":%04X", port))
    end
  rescue Errno::ENOENT
    next
  end
  pids.to_h do |pid|
    fds = Dir.glob("/proc/#{pid}/fd/*").count do |fd|
      inodes.key?(File.readlink(fd)[/\Asocket:\[(\d+)\]/, 1])
    rescue Errno::ENOENT
      false
    end
    [pid, fds]
  end
end

# The median of the values that are numbers (NaN marks a failed run); NaN if none is.
def median(values)
  sorted = values.reject(&:nan?).sort
  return Float::NAN if sorted.empty?

  mid = sorted.size / 2
  sorted.size.odd? ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2.0
end

# A rate for the table: thousands separated, or "failed".
def rate(value)
  value.nan? ? "failed" : value.round.to_s.reverse.scan(/\d{1,3}/).join(",").reverse
end

# A ratio for the table ("1.05x"), or "-" when there is none.
def times(value)
  return "-" if value.nan? || value.infinite?

  format(value >= 10 ? "%.1fx" : "%.2fx", value)
end

# The median of the per-round ratios a/b of `metric`, with each round's ratio in brackets.
def ratio(runs, a, b, metric)
  ratios = pair_ratios_of(runs, a, b, metric)
  pairs = ratios.map { |r| r.nan? || r.infinite? ? "-" : format(r >= 10 ? "%.0f" : "%.2f", r) }.join(" ")
  "#{times(median(ratios))} (#{pairs})"
end

# The per-pair ratios a/b of `metric` (runs[a][i][metric] / runs[b][i][metric]).
def pair_ratios_of(runs, a, b, metric)
  runs[a].zip(runs[b]).map { |x, y| x[metric] / y[metric] }
end

# The median of the per-pair ratios a/b of `metric` as a results note ("0.88×"); nil when b
# did not run.
def pair_note(runs, a, b, metric)
  runs[b] && note_times(median(pair_ratios_of(runs, a, b, metric)))
end

# The last lines of the server's log, indented, for a warning; for a Ruby crash report, its
# [BUG] line and the top of its Ruby backtrace instead (the report ends with memory maps).
def log_tail(log)
  lines = File.exist?(log) ? File.readlines(log) : []
  if (bug = lines.index { |l| l.include?("[BUG]") })
    backtrace = lines.index { |l| l.start_with?("-- Ruby level backtrace") }
    lines = [lines[bug], *(backtrace ? lines[backtrace + 1, 3] : [])]
  else
    lines = lines.last(10)
  end
  text = lines.join
  text.empty? ? "    (the server printed nothing)" : text.gsub(/^/, "    | ").chomp
end

# The load tool of the WebSocket, cluster and raw benchmarks (built by `rake wsload`).
WSLOAD = File.join(__dir__, "wsload", "target", "release", "wsload")

# Runs wsload `mode` (pinned to `cpus`) against `port` (HOST in `args` becomes its address);
# yields each line it prints, returns the last line's JSON (nil if it failed; its stderr goes
# to ours).
def wsload(mode, args, port, cpus:, &each_line)
  cmd = ["taskset", "-c", cpus.to_s, WSLOAD, mode, *args.map { |a| a.sub("HOST", "127.0.0.1:#{port}") }]
  last = nil
  IO.popen(cmd) do |out|
    out.each_line do |line|
      last = line
      each_line&.call(line)
    end
  end
  $?.success? && last ? JSON.parse(last) : nil
rescue JSON::ParserError
  warn "  wsload printed #{last.inspect}"
  nil
end

# Why puma + faye-websocket (the WebSocket baseline) can't run, or nil when they can.
def faye_missing
  return "puma is missing (apt install puma)" unless system("which puma > /dev/null")
  unless system(RbConfig.ruby, "-e", "require 'faye/websocket'", err: File::NULL)
    return "faye-websocket is missing (apt install ruby-faye-websocket)"
  end

  nil
end

# Runs bench/idle_client.rb (`port`, `count`, `open_for` and `hold` seconds, `mode`: see
# there) on CPU `cpu`, in a process group of its own, and yields [open, failed] once it
# printed "ready OPEN FAILED"; nil (with a warning) if it didn't within `ready_within`
# seconds. The client's stdin closes when the block returns, which ends it.
def with_idle_client(port, count, mode, cpu:, open_for:, ready_within:)
  out_r, out_w = IO.pipe
  in_r, in_w = IO.pipe
  args = [port, count, open_for.round, (ready_within + 120).round, mode].map(&:to_s)
  pid = Process.spawn("taskset", "-c", cpu.to_s, RbConfig.ruby, File.join(__dir__, "idle_client.rb"), *args,
                      in: in_r, out: out_w, pgroup: true)
  in_r.close
  out_w.close
  line = IO.select([out_r], nil, nil, ready_within) && out_r.gets
  unless line&.start_with?("ready")
    warn "  the idle client did not get ready within #{ready_within.round} s"
    return nil
  end
  _, open, failed = line.split.map(&:to_i)
  yield open, failed
ensure
  in_w&.close
  out_r&.close
  reap(pid, 10) if pid
end

# The resident memory `count` idle connections of bench/idle_client.rb's `mode` cost the
# server `pid` listening on `port`: { held:, failed:, before:, after:, per_1000: } (MiB; held:
# what both the server and the client hold at the end), nil if the client never got ready
# within `ready_within` seconds or nothing was held. 100 connections come first and go, so
# what loads on the first connections is not counted.
def idle_growth(pid, port, count, mode, cpu:, ready_within:)
  with_idle_client(port, 100, mode, cpu: cpu, open_for: ready_within, ready_within: ready_within) { nil }
  sleep 0.5
  before = rss_mb(pid)
  result = nil
  with_idle_client(port, count, mode, cpu: cpu, open_for: ready_within, ready_within: ready_within) do |open, failed|
    sleep 0.5 # the server settles
    held = [connections_by_process([pid], port)[pid], open].min
    after = rss_mb(pid)
    if held.positive?
      result = { held: held, failed: failed, before: before, after: after, per_1000: (after - before) * 1000 / held }
    end
  end
  result
end

# Where record_results writes: one JSON file per bench script, which bench/results.rb renders
# into bench/RESULTS.md and bench/results.svg.
RESULTS_DIR = ENV.fetch("BENCH_RESULTS_DIR", File.join(__dir__, "results"))

# A figure for a results file: nil for what is not a finite number, floats rounded (to 0.1
# from 100 up, else to 4 significant digits).
def result_number(value)
  return nil unless value.is_a?(Numeric) && value.finite?
  return value.round(1) if value.abs >= 100
  return value if value.zero?

  value.round(3 - Math.log10(value.abs).floor)
end

# A ratio for a results note ("0.88×"), or nil when there is none.
def note_times(value)
  return nil unless value.is_a?(Numeric) && value.finite?

  format(value >= 10 ? "%.1f×" : "%.2f×", value)
end

# The median of the per-pair ratios of `ours` to `base` (lists of values, one per pair), turned
# so that > 1 means ours is better: ours / base when `better` is "higher", base / ours when it
# is "lower" (memory, CPU, time); nil when no pair has both.
def better_ratio(ours, base, better)
  ratios = ours.zip(base).filter_map do |a, b|
    next unless a && b

    r = better == "lower" ? b.to_f / a : a.to_f / b
    r if r.finite?
  end
  ratios.empty? ? nil : result_number(median(ratios))
end

# One row for record_results from `runs` ({ server => [its run per pair] }, a run being a Hash
# holding `metric`, or the value itself when `metric` is nil): the medians of `ours`, of the C
# gem (`cgem`, a server of `runs`) and of the best of `others` ({ server => name shown }); the
# ratio against each (better_ratio: > 1 means ours is better) and, as the headline, the one
# against `against` (a shown name), else the C gem's, else the best other's. `extra` is kept
# (goal:, note:); a note may be a list, whose nil and false entries are left out.
def result_row(line, runs, metric, unit:, better: "higher", ours: "iodine", cgem: nil, others: {}, against: nil,
               **extra)
  values = ->(server) { (runs[server] || []).map { |r| (metric ? r[metric] : r).to_f } }
  med = ->(server) { runs[server] ? result_number(median(values.call(server))) : nil }
  ratios = {}
  ratios["C gem"] = better_ratio(values.call(ours), values.call(cgem), better) if cgem && runs[cgem]
  others.each { |server, shown| ratios[shown] = better_ratio(values.call(ours), values.call(server), better) if runs[server] }
  ratios.compact!
  ran = others.keys.select { |server| med.call(server) }
  best = better == "lower" ? ran.min_by { |s| med.call(s) } : ran.max_by { |s| med.call(s) }
  against ||= ratios.key?("C gem") ? "C gem" : others[best]
  note = Array(extra.delete(:note)).select { |n| n }.join("; ")
  extra[:note] = note unless note.empty?
  { line: line, ours: med.call(ours), unit: unit, better: better, cgem: cgem && med.call(cgem),
    best_other: best && med.call(best), best_other_name: best && others[best], ratio: ratios[against],
    ratio_against: against, ratios: ratios, **extra.compact }
end

# Writes a bench script's headline figures, `rows` (result_row's Hashes), to
# RESULTS_DIR/BENCH.json, each row stamped with today's date and this machine (cores,
# kernel). A row replaces the one of the same line from an earlier run; the earlier run's
# other lines stay (a run narrowed with BENCH_CASES updates only its own). Nothing is written
# when there is no row, or with BENCH_RECORD=0 (an A/B of two builds of this gem, where
# BENCH_CGEM points at the other build: its "C gem" is not the C gem).
def record_results(bench, rows)
  rows = rows.compact
  return if rows.empty? || ENV["BENCH_RECORD"] == "0"

  machine = "#{Etc.nprocessors} cores, #{Etc.uname[:sysname]} #{Etc.uname[:release]}"
  stamp = { "date" => Time.now.strftime("%Y-%m-%d"), "machine" => machine }
  Dir.mkdir(RESULTS_DIR) unless File.directory?(RESULTS_DIR)
  path = File.join(RESULTS_DIR, "#{bench}.json")
  rows = rows.map { |row| row.transform_keys(&:to_s).merge(stamp) }
  earlier = File.exist?(path) ? JSON.parse(File.read(path)).fetch("rows", []) : []
  fresh = rows.to_h { |row| [row["line"], row] }
  merged = earlier.map { |row| fresh.delete(row["line"]) || row } + fresh.values
  File.write(path, "#{JSON.pretty_generate({ 'bench' => bench, 'rows' => merged })}\n")
  puts "bench: #{rows.size} line(s) recorded in #{path} (rake bench_results renders bench/RESULTS.md)"
end
