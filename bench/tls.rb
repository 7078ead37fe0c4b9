# frozen_string_literal: true

# TLS benchmark: iodine -t 1 serving examples/hello.ru over TLS (-tls-cert/-tls-key) against
# the C gem (iodine 0.7, the same app and flags, OpenSSL), run interleaved (A B B A …) with the
# server pinned to one core and wrk to the other. Prints every run, then for each case the
# median of the per-pair ratios iodine/C gem of req/s and of the server's CPU time per request
# (utime + stime of every thread, read from /proc at the edges of the measured window: what
# still tells the servers apart when wrk saturates its core, as it does once every request
# is a handshake); then the server memory of idle TLS connections against idle plain ones.
#
#   rake bench_tls
#   BENCH_PAIRS=3 BENCH_SECONDS=5 BENCH_TLS_IDLE=10000 ruby bench/tls.rb
#   BENCH_CASES=full ruby bench/tls.rb     # only the cases whose name contains it ("idle" too)
#   BENCH_CGEM=/path/to/iodine-0.7/lib ruby bench/tls.rb   # where the C gem is (c_gem in support.rb)
#   BENCH_TLS_KEY=rsa ruby bench/tls.rb    # an RSA 2048 certificate instead of ECDSA P-256
#
# Cases (BENCH_CONNECTIONS wrk connections, 100 by default):
# - keep-alive: hello world over TLS, many requests per connection;
# - full handshake: `Connection: close`, so each request is a new TCP connection and a new
#   TLS handshake. wrk keeps its SSL object across reconnects (SSL_clear), so on its own it
#   offers the previous connection's session and both servers resume it (TLS 1.3 PSK: no
#   certificate, no signature). A tiny LD_PRELOAD shim, built here with cc, drops that
#   session after each SSL_clear, so every handshake is a full one (ECDHE + the server's
#   ECDSA signature). Without cc this case is skipped;
# - resumed handshake: the same without the shim (what wrk and browsers do by default).
#   The probe line printed for each server says whether it resumes sessions at all; one that
#   does not does a full handshake here too.
# - idle: the server's resident memory before and after BENCH_TLS_IDLE (10,000) connections
#   that completed the handshake and then send nothing, and the same number of plain
#   connections to the same server started without the TLS flags; MiB per 1,000 each, their
#   ratio, and what a TLS connection costs over a plain one.
#
# The certificate is ECDSA P-256 (CN=localhost, SAN localhost and 127.0.0.1), made with
# openssl in a temporary folder (BENCH_TLS_KEY=rsa: RSA 2048). A handshake costs wrk (OpenSSL 3)
# about a millisecond of CPU, as much as it costs the C gem, so in the handshake cases wrk
# fills its core and caps req/s near the C gem's: there the server's CPU per request is the
# measure that tells them apart (the summary says when wrk was saturated). A server that does
# not start, or does not answer the TLS probe (a handshake and a GET) within a few seconds, is
# warned about and skipped.

require "openssl"
require "socket"
require "rbconfig"
require "etc"
require "tmpdir"
require "timeout"
require_relative "support"

ROOT = File.expand_path("..", __dir__)
PAIRS = Integer(ENV.fetch("BENCH_PAIRS", "3"))
SECONDS = Integer(ENV.fetch("BENCH_SECONDS", "5"))
CONNECTIONS = Integer(ENV.fetch("BENCH_CONNECTIONS", "100"))
REQUESTED_IDLE = Integer(ENV.fetch("BENCH_TLS_IDLE", "10000"))
# Every server and the idle client inherit the hard open-files limit (the idle case holds
# thousands), so each can hold about that many.
Process.setrlimit(:NOFILE, Process.getrlimit(:NOFILE)[1])
IDLE = [REQUESTED_IDLE, Process.getrlimit(:NOFILE)[1] - 200].min
ONLY = ENV["BENCH_CASES"]
KEY_TYPE = ENV.fetch("BENCH_TLS_KEY", "ec")
SERVER_CPU = 0
LOAD_CPU = Etc.nprocessors > 1 ? 1 : 0
APP = File.join(ROOT, "examples", "hello.ru")
GOAL_RATE = 1.10 # iodine / C gem, req/s, every case
GOAL_IDLE = 2.0  # idle TLS / idle plain memory, at most

# Name, extra wrk arguments, and whether the fresh-session shim is preloaded into wrk.
CASES = [
  ["keep-alive", [], false],
  ["full handshake", ["-H", "Connection: close"], true],
  ["resumed handshake", ["-H", "Connection: close"], false]
].freeze

# `iodine -t 1` serving APP, with the gem found on `paths` and run by `exe`; TLS flags when
# `tls` is [cert, key].
def iodine(paths, exe)
  lambda do |port, tls|
    flags = tls ? ["-tls-cert", tls[0], "-tls-key", tls[1]] : []
    [RbConfig.ruby, *paths.map { |p| "-I#{p}" }, exe, "-V", "1", "-p", port.to_s, "-b", "127.0.0.1", "-t", "1",
     *flags, APP]
  end
end

SERVERS = { "iodine" => iodine([File.join(ROOT, "lib")], File.join(ROOT, "exe", "iodine")) }
PROBED = {}    # server => the probe's description, printed once
NO_TLS = {}    # server => why it does not serve TLS (its TLS runs are skipped after the first)

# One HTTPS GET / on `port` with `ctx` (offering `session` when given); the SSL socket, closed,
# once the whole answer arrived.
def tls_get(ctx, port, session = nil)
  Timeout.timeout(3) do
    tcp = Socket.tcp("127.0.0.1", port, connect_timeout: 2)
    ssl = OpenSSL::SSL::SSLSocket.new(tcp, ctx)
    ssl.sync_close = true
    ssl.hostname = "localhost"
    ssl.session = session if session
    ssl.connect
    ssl.write("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    # Up to the end of the body, not to EOF (a close without close_notify is an error to OpenSSL).
    answer = +""
    answer << ssl.readpartial(4096) until answer.end_with?("Hello World!")
    raise "answered #{answer[0, 60].inspect}" unless answer.start_with?("HTTP/1.1 200")

    ssl.close
    ssl
  end
end

# Checks that `port` serves the app over TLS: a description (protocol, cipher, key exchange,
# whether it resumes a session); raises (RuntimeError) why not. Retries for about 3 s.
def tls_probe(port)
  ctx = OpenSSL::SSL::SSLContext.new
  ctx.verify_mode = OpenSSL::SSL::VERIFY_NONE
  ctx.session_cache_mode = OpenSSL::SSL::SSLContext::SESSION_CACHE_CLIENT
  session = nil
  ctx.session_new_cb = ->(args) { session = args[1] } # TLS 1.3 tickets come after the handshake
  attempts = 0
  begin
    first = tls_get(ctx, port)
  rescue StandardError => e
    raise "no TLS answer (#{e.class}: #{e.message})" if (attempts += 1) >= 3

    sleep 1
    retry
  end
  key = first.tmp_key
  group = if key.respond_to?(:group) && key.group then key.group.curve_name
          elsif key.respond_to?(:oid) then key.oid
          else key.class
          end
  resumes = begin
    session ? (tls_get(ctx, port, session).session_reused? ? "yes" : "no") : "no (no session ticket)"
  rescue StandardError => e
    "unknown (#{e.class}: #{e.message})"
  end
  "#{first.ssl_version} #{first.cipher[0]} #{group}, resumes sessions: #{resumes}"
end

# Starts `server` pinned to SERVER_CPU (with TLS when `tls` is [cert, key]) and yields its pid
# and port once it accepts (and, with TLS, answered the probe); nil (with a warning and its
# log) if it did not.
def with_server(server, tls, tmp)
  return nil if tls && NO_TLS[server]

  port = free_port
  log = File.join(tmp, "#{server}-#{port}.log")
  cmd = SERVERS.fetch(server).call(port, tls)
  with_pinned_server(cmd, port, cpu: SERVER_CPU, env: { "RACK_ENV" => "production" }, name: server, log: log) do |pid|
    if tls
      begin
        probe = tls_probe(port)
      rescue RuntimeError => e
        NO_TLS[server] = e.message
        warn "  #{server} does not serve TLS: #{e.message}; its TLS runs are skipped. Its log:\n#{log_tail(log)}"
        next nil
      end
      unless PROBED[server]
        PROBED[server] = probe
        puts "  #{server}: #{probe}"
      end
    end
    yield pid, port
  end
rescue RuntimeError => e # did not start
  warn "  #{e.message}:\n#{log_tail(log)}"
  nil
ensure
  File.delete(log) if log && File.exist?(log)
end

# Runs wrk on LOAD_CPU against https://127.0.0.1:port/ for `seconds`; returns [output, CPU
# seconds wrk used].
def wrk(port, args, seconds, shim)
  env = shim ? { "LD_PRELOAD" => shim } : {}
  cmd = ["taskset", "-c", LOAD_CPU.to_s, "wrk", "-t1", "-c#{CONNECTIONS}", "-d#{seconds}s", *args,
         "https://127.0.0.1:#{port}/"]
  t0 = Process.times
  out = IO.popen(env, cmd, err: %i[child out], &:read)
  t1 = Process.times
  [out, (t1.cutime + t1.cstime) - (t0.cutime + t0.cstime)]
end

# One run of a case: { rate:, cpu_us:, wrk_cpu:, note: } (server CPU per request, wrk's share
# of its core); NaNs when the server or wrk failed.
def measure(server, args, shim, tls, tmp)
  run = { rate: Float::NAN, cpu_us: Float::NAN, wrk_cpu: Float::NAN, note: nil }
  started = false
  with_server(server, tls, tmp) do |pid, port|
    started = true
    wrk(port, args, 1, shim) # warm up
    cpu_before = cpu_seconds([pid])
    out, wrk_cpu = wrk(port, args, SECONDS, shim)
    cpu = cpu_seconds([pid]) - cpu_before
    if Process.waitpid(pid, Process::WNOHANG)
      run[:note] = "the server exited during the run (#{$?.inspect})"
      next
    end
    if out.include?("cannot be preloaded")
      run[:note] = "the shim did not load: #{out.lines.first.strip}"
      next
    end
    requests = out[/(\d+) requests in/, 1].to_i
    errors = [out[/Socket errors: .*/], out[/Non-2xx or 3xx responses: \d+/]].compact
    run[:note] = errors.join("; ") unless errors.empty?
    run[:wrk_cpu] = wrk_cpu / SECONDS
    if requests.zero?
      run[:note] ||= "no request answered: #{out.lines.last&.strip}"
      next
    end
    run[:rate] = out[%r{Requests/sec:\s+([\d.]+)}, 1].to_f
    run[:cpu_us] = cpu / requests * 1e6
  end
  run[:note] ||= NO_TLS[server] ? "skipped: no TLS" : "did not start" unless started
  run
end

# Builds the LD_PRELOAD shim that makes wrk forget the TLS session on reconnect (so each
# handshake is a full one); its path, or nil (with a warning) without a C compiler.
def fresh_session_shim(tmp)
  src = File.join(tmp, "fresh_session.c")
  so = File.join(tmp, "fresh_session.so")
  File.write(src, <<~C)
    /* wrk calls SSL_clear before reconnecting, which keeps the session and so resumes it. */
    #define _GNU_SOURCE
    #include <dlfcn.h>
    typedef struct ssl_st SSL;
    int SSL_clear(SSL *s) {
      static int (*real)(SSL *);
      static int (*set_session)(SSL *, void *);
      if (!real) real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
      if (!set_session) set_session = (int (*)(SSL *, void *))dlsym(RTLD_DEFAULT, "SSL_set_session");
      int r = real(s);
      set_session(s, 0);
      return r;
    }
  C
  out = IO.popen([ENV.fetch("CC", "cc"), "-shared", "-fPIC", "-O2", "-o", so, src, "-ldl"], err: %i[child out], &:read)
  return so if $?.success?

  warn "bench: no full-handshake case (building the wrk shim failed: #{out.strip[0, 200]})"
  nil
rescue SystemCallError => e
  warn "bench: no full-handshake case (no C compiler: #{e.message})"
  nil
end

# Runs bench/idle_client.rb: COUNT connections to `port`, each through its handshake with
# `tls`, and yields [open, failed] once they are all open; nil if it never said it was ready.
# Bounded: 30 s + 20 ms per connection to get ready; the client exits when the block returns.
def idle_clients(port, count, tls, &block)
  ready_within = 30 + count * 0.02
  with_idle_client(port, count, tls ? "tls" : "plain", cpu: LOAD_CPU, open_for: ready_within,
                                                       ready_within: ready_within, &block)
end

# Server memory for IDLE idle connections (TLS or plain): { held:, missing:, before:, after:,
# per_1000: } (MiB; held: what the server holds at the end), nil if it failed.
def idle_memory(server, tls, tmp)
  with_server(server, tls, tmp) do |pid, port|
    # Warm up first, so what loads on the first connections (and handshakes) is not counted.
    idle_clients(port, 100, tls) { nil }
    sleep 0.5
    before = rss_mb(pid)
    result = nil
    idle_clients(port, IDLE, tls) do |open, failed|
      sleep 0.5 # the last handshakes finish on the server's side
      held = connections_by_process([pid], port)[pid]
      after = rss_mb(pid)
      count = [held, open].min
      if count.positive?
        warn "  #{server}: #{failed} idle connection(s) failed to open" if failed.positive?
        result = { held: count, missing: IDLE - count, before: before, after: after,
                   per_1000: (after - before) * 1000 / count }
      end
    end
    result
  end
end

$stdout.sync = true # each run shows as it ends, also through a pipe
abort "bench: BENCH_TLS_KEY must be ec or rsa (got #{KEY_TYPE.inspect})" unless %w[ec rsa].include?(KEY_TYPE)
abort "bench: wrk is missing (bin/setup installs it)" unless system("which wrk > /dev/null")
abort "bench: openssl is missing (apt install openssl)" unless system("which openssl > /dev/null")
servers = ["iodine"]
c_paths, c_exe, why = c_gem_server
if why
  warn "bench: skipping the C gem (iodine 0.7): #{why}"
else
  SERVERS["iodine-C"] = iodine(c_paths, c_exe)
  servers << "iodine-C"
end
if IDLE < REQUESTED_IDLE
  warn "bench: BENCH_TLS_IDLE=#{REQUESTED_IDLE} is over the open-files limit " \
       "(#{Process.getrlimit(:NOFILE)[1]}); holding #{IDLE}"
end

Dir.mktmpdir("bench-tls") do |tmp|
  tls = self_signed_cert(tmp, KEY_TYPE)
  shim = CASES.any? { |name, _, s| s && (!ONLY || name.include?(ONLY)) } ? fresh_session_shim(tmp) : nil

  puts "TLS: #{KEY_TYPE == 'rsa' ? 'RSA 2048' : 'ECDSA P-256'} certificate; servers -t 1 pinned to CPU #{SERVER_CPU}, " \
       "wrk -t1 -c#{CONNECTIONS} on CPU #{LOAD_CPU}; #{PAIRS} pair(s) of #{SECONDS} s"
  results = {}
  CASES.each do |name, args, needs_shim|
    next if ONLY && !name.include?(ONLY)
    next if needs_shim && !shim

    runs = servers.to_h { |server| [server, []] }
    PAIRS.times do |i|
      # Alternate which goes first (A B B A …), so a drift within a pair favours neither.
      (i.even? ? servers : servers.reverse).each do |server|
        run = measure(server, args, needs_shim ? shim : nil, tls, tmp)
        runs[server] << run
        puts format("  %-18s %-9s %10s req/s %9.1f us CPU/req  wrk %3.0f%% CPU%s", name, server, rate(run[:rate]),
                    run[:cpu_us], run[:wrk_cpu] * 100, run[:note] ? "  (#{run[:note]})" : "")
      end
    end
    results[name] = runs
  end

  # For each case: each server's medians, and iodine against the C gem: the median of the
  # per-pair ratios (req/s: higher is better; CPU per request: lower is better).
  unless results.empty?
    puts
    results.each do |name, runs|
      puts name
      runs.each do |server, list|
        puts format("  %-9s %10s req/s %9.1f us CPU/req  wrk %3.0f%% CPU", server, rate(median(list.map { |r| r[:rate] })),
                    median(list.map { |r| r[:cpu_us] }), median(list.map { |r| r[:wrk_cpu] }) * 100)
      end
      next unless runs["iodine-C"]

      puts format("  iodine / iodine-C  req/s %-24s CPU/req %-24s (goal: req/s >= %.2fx)",
                  ratio(runs, "iodine", "iodine-C", :rate), ratio(runs, "iodine", "iodine-C", :cpu_us), GOAL_RATE)
      saturated = runs.values.flatten.map { |r| r[:wrk_cpu] }.reject(&:nan?).max.to_f >= 0.9
      puts "  (wrk used its whole core: req/s is the client's limit here; CPU/req compares the servers)" if saturated
    end
  end

  idle = nil # server => [TLS, plain] MiB per 1,000, for the results
  if !ONLY || "idle".include?(ONLY)
    idle = {}
    puts
    puts "Idle connections (#{rate(IDLE.to_f)} each, opened by a Ruby client on CPU #{LOAD_CPU}; server RSS before -> after)"
    servers.each do |server|
      plain = idle_memory(server, nil, tmp)
      secure = idle_memory(server, tls, tmp)
      [["TLS", secure], ["plain", plain]].each do |kind, m|
        if m
          failed = m[:missing].positive? ? "  (#{m[:missing]} not held)" : ""
          puts format("  %-9s %-5s %6d held: %7.1f -> %7.1f MiB, %6.2f MiB per 1,000%s", server, kind, m[:held],
                      m[:before], m[:after], m[:per_1000], failed)
        else
          puts format("  %-9s %-5s could not hold idle connections (skipped)", server, kind)
        end
      end
      next unless secure && plain

      idle[server] = [secure[:per_1000], plain[:per_1000]]
      extra_kib = (secure[:per_1000] - plain[:per_1000]) * 1024 / 1000
      puts format("  %-9s TLS / plain: %s (goal: <= %.1fx); a TLS connection costs %.1f KiB more than a plain one",
                  server, times(secure[:per_1000] / plain[:per_1000]), GOAL_IDLE, extra_kib)
    end
  end

  # The headline figures, for bench/RESULTS.md, against the C gem: req/s with keep-alive; the
  # server's CPU per handshake (wrk fills its core there, so req/s is about even); the memory
  # of an idle TLS connection.
  rows = results.map do |name, runs|
    pair = ->(metric) { pair_note(runs, "iodine", "iodine-C", metric) }
    if name == "keep-alive"
      cpu = pair.call(:cpu_us)
      result_row("TLS keep-alive", runs, :rate, unit: "req/s", cgem: "iodine-C",
                 goal: format("≥ %.2f× C gem", GOAL_RATE), note: cpu && "CPU per request #{cpu} the C gem's")
    else
      rps = pair.call(:rate)
      result_row("TLS #{name} (server CPU)", runs, :cpu_us, unit: "µs CPU per handshake", better: "lower",
                 cgem: "iodine-C", note: rps && "req/s #{rps} the C gem's")
    end
  end
  if idle && idle["iodine"]
    ours, ours_plain = idle["iodine"]
    c, c_plain = idle["iodine-C"]
    note = ["plain #{format('%.1f', ours_plain)}#{c_plain ? format(' (C gem %.1f)', c_plain) : ''}",
            "TLS / plain #{note_times(ours / ours_plain)}#{c ? " (C gem #{note_times(c / c_plain)})" : ''}"]
    rows << result_row("TLS idle memory", idle.transform_values { |(secure, _)| [secure] }, nil,
                       unit: "MiB per 1,000 conns", better: "lower", cgem: "iodine-C",
                       goal: format("TLS ≤ %.1f× plain", GOAL_IDLE), note: note)
  end
  record_results("tls", rows)
end
