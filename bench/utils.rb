# frozen_string_literal: true

# Iodine::Rack::Utils against what it replaces: Rack::Utils.unescape / unescape_path /
# rfc2822 / rfc2109 and Time#httpdate. BENCH_CALLS calls (default 1,000,000) of each, in
# BENCH_PAIRS interleaved pairs (default 5: iodine, Rack, iodine, Rack, …); prints the median
# seconds of each side and the median of the pair ratios (Rack ÷ iodine: how many times faster
# iodine is). `rake bench_utils`, or `ruby -Ilib bench/utils.rb`.

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "iodine"
require "rack"
require "rack/utils"
require "time"
require_relative "support"

CALLS = Integer(ENV.fetch("BENCH_CALLS", "1000000"))
PAIRS = Integer(ENV.fetch("BENCH_PAIRS", "5"))

U = Iodine::Rack::Utils
QUERY = "name=J%C3%BCrgen+M%C3%BCller&city=M%C3%BCnchen&q=rust+%2B+ruby%3F&page=2"
PATH = "/users/J%C3%BCrgen%20M%C3%BCller/files/report+2024%20(final).pdf"
TIME = Time.at(784_111_777).utc

# name => [iodine's call, the other's name, the other's call]; each returns the same String.
CASES = {
  "decode_url" => [-> { U.decode_url(QUERY) }, "Rack::Utils.unescape", -> { Rack::Utils.unescape(QUERY) }],
  "decode_path" => [-> { U.decode_path(PATH) }, "Rack::Utils.unescape_path", -> { Rack::Utils.unescape_path(PATH) }],
  "rfc2822" => [-> { U.rfc2822(TIME) }, "Rack::Utils.rfc2822", -> { Rack::Utils.rfc2822(TIME) }],
  "rfc2109" => [-> { U.rfc2109(TIME) }, "Rack::Utils.rfc2109", -> { Rack::Utils.rfc2109(TIME) }],
  "time2str" => [-> { U.time2str(TIME) }, "Time#httpdate", -> { TIME.httpdate }]
}.freeze

# Seconds for CALLS calls of `callable` (a `while` loop: the least loop overhead Ruby has).
def seconds(callable)
  GC.start
  i = 0
  start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  while i < CALLS
    callable.call
    i += 1
  end
  Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
end

CASES.each do |name, (ours, other_name, other)|
  raise "#{name}: #{ours.call.inspect} != #{other.call.inspect}" unless ours.call == other.call
end

puts "Iodine::Rack::Utils vs Rack #{Rack.release} / Ruby #{RUBY_VERSION}: #{CALLS} calls, " \
     "#{PAIRS} interleaved pairs, medians"
puts
puts format("%-12s %10s  %-26s %10s  %8s", "iodine", "seconds", "vs", "seconds", "faster")
rows = [] # the headline figures, for bench/RESULTS.md
CASES.each do |name, (ours, other_name, other)|
  ours_s = []
  other_s = []
  PAIRS.times do
    ours_s << seconds(ours)
    other_s << seconds(other)
  end
  ratio = median(ours_s.zip(other_s).map { |a, b| b / a })
  puts format("%-12s %10.3f  %-26s %10.3f  %7.1f×", name, median(ours_s), other_name, median(other_s), ratio)
  rows << result_row("Iodine::Rack::Utils.#{name}", { "iodine" => ours_s, other_name => other_s }, nil,
                     unit: CALLS == 1_000_000 ? "s per 1M calls" : "s per #{rate(CALLS.to_f)} calls", better: "lower",
                     others: { other_name => other_name })
end
record_results("utils", rows)
