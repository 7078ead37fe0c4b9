# frozen_string_literal: true

# Before/after benchmark: this checkout's iodine against another checkout's (a baseline
# commit with its extension built), run interleaved (A B A B …) on the same machine, so the
# noise of a shared VM hits both alike. Reports the median of the per-pair ratios.
#
#   ruby bench/compare.rb /path/to/baseline/checkout
#   BENCH_PAIRS=5 BENCH_SECONDS=4 BENCH_CASES=hello ruby bench/compare.rb /tmp/base
#
# Cases: hello world pinned with -t 1 (the bridge), -t 2 (the default here), a 64 KiB GET
# (bodies) and a 1 MiB POST read through rack.input (uploads). Make a baseline with:
# git worktree add /tmp/base <commit> && (cd /tmp/base && rake compile).

require "socket"
require "rbconfig"
require "etc"
require_relative "support"

ROOT = File.expand_path("..", __dir__)
BASE = ARGV[0] || abort("usage: ruby bench/compare.rb BASELINE_CHECKOUT")
PAIRS = Integer(ENV.fetch("BENCH_PAIRS", "5"))
SECONDS = Integer(ENV.fetch("BENCH_SECONDS", "4"))
CONNECTIONS = Integer(ENV.fetch("BENCH_CONNECTIONS", "100"))
SERVER_CPU = 0
WRK_CPU = Etc.nprocessors > 1 ? 1 : 0
APP = File.join(__dir__, "compare_app.ru")
CASES = [
  ["hello -t 1", %w[-t 1], "/"],
  ["hello -t 2", %w[-t 2], "/"],
  ["64 KiB GET -t 2", %w[-t 2], "/64k"],
  ["1 MiB POST -t 2", %w[-t 2], "/upload"]
].freeze

# req/s of `root`'s iodine with `flags`, wrk on `path`.
def measure(root, flags, path)
  port = free_port
  cmd = [RbConfig.ruby, "-I#{File.join(root, 'lib')}", File.join(root, "exe", "iodine"), "-V", "1",
         "-p", port.to_s, "-b", "127.0.0.1", *flags, APP]
  with_pinned_server(cmd, port, cpu: SERVER_CPU, name: root) do
    url = "http://127.0.0.1:#{port}#{path}"
    # Uploads: a 1 MiB POST body from a wrk script, fewer connections (each holds a body).
    extra = path == "/upload" ? "-c10 -s #{File.join(__dir__, 'post_1m.lua')}" : "-c#{CONNECTIONS}"
    `taskset -c #{WRK_CPU} wrk -t1 #{extra} -d1s #{url} 2>&1`
    out = `taskset -c #{WRK_CPU} wrk -t1 #{extra} -d#{SECONDS}s #{url} 2>&1`
    warn out[/Non-2xx.*|Socket errors.*/] if out =~ /Non-2xx|Socket errors/
    out[/Requests\/sec:\s+([\d.]+)/, 1].to_f
  end
end

abort "bench: wrk is missing (bin/setup installs it)" unless system("which wrk > /dev/null")
[ROOT, BASE].each do |root|
  so = File.join(root, "lib", "iodine", "iodine.so")
  abort "#{so} is missing: run rake compile in #{root}" unless File.exist?(so)
end

puts format("%-18s %12s %12s %10s   %s", "case", "this req/s", "base req/s", "ratio", "pair ratios")
only = ENV["BENCH_CASES"] # e.g. "64 KiB": run only the cases whose name contains it
CASES.each do |name, flags, path|
  next if only && !name.include?(only)

  ours = []
  base = []
  PAIRS.times do |i|
    # Alternate which goes first, so a drift within a pair favours neither.
    if i.even?
      ours << measure(ROOT, flags, path)
      base << measure(BASE, flags, path)
    else
      base << measure(BASE, flags, path)
      ours << measure(ROOT, flags, path)
    end
  end
  ratios = ours.zip(base).map { |a, b| b.positive? ? a / b : Float::NAN }
  puts format("%-18s %12.0f %12.0f %9.2fx   %s", name, median(ours), median(base), median(ratios),
              ratios.map { |r| format("%.2f", r) }.join(" "))
end
