# frozen_string_literal: true

# JSON benchmark: Iodine::JSON against Oj (Debian's ruby-oj) and the json gem, in one process
# and one run, so the ratios are comparable on a noisy machine.
#
#   rake bench_json                      # builds the extension, then runs this
#   ruby -Ilib bench/json.rb             # BENCH_ROUNDS=5 by default
#   BENCH_ROUNDS=1 BENCH_PASSES=10 ruby -Ilib bench/json.rb   # a quick check
#
# Four cases, all data generated from a seeded Random (every run does the same work):
# - parse 1 MB: one ~1 MiB document of mixed records (strings with escapes and non-ASCII
#   text, integers (a few bignums), floats, booleans, nulls, nested objects and arrays);
# - parse small: 1,000 different API payloads of ~200 bytes, each parsed once per pass;
# - parse 1 MB, symbolize_names: the same document with Symbol keys;
# - generate 1 MB: the parsed tree of that document back to text.
# Baselines: `Oj.load(s, mode: :strict, bigdecimal_load: :float)` (by default Oj makes a
# BigDecimal of every float with more than 15 digits, which is other work and another value:
# :float makes its values those of JSON.parse), with `symbol_keys: true` for symbolize_names,
# and `Oj.dump(o, mode: :compat)`; `JSON.parse` and `JSON.generate`.
#
# Before timing, every library's result is checked: a parse must equal JSON.parse's value
# (same classes, Floats bit for bit, keys in the same order), a generated text must parse back
# to the tree; a library that fails a check is left out of that case. Then BENCH_ROUNDS rounds
# interleaved (iodine oj json, json oj iodine, …): each timing is a fixed amount of work (PASSES
# passes over the case's inputs) after a GC.start, measured with CLOCK_MONOTONIC. Prints every
# timing, then per case the median ops/s and MB/s (10^6 bytes of JSON text) of each library and
# the median of the per-round ratios iodine/Oj and iodine/json, next to the issue's goals. Oj
# missing (apt-get install ruby-oj; bin/setup installs it) is skipped with a message.

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "iodine"
require "json"
require_relative "support"
require_relative "../spec/support/json_diff"

ROUNDS = Integer(ENV.fetch("BENCH_ROUNDS", "5"))
# Passes over a case's inputs per timing (40: 40 MB of JSON text per timing of a 1 MB case).
PASSES = Integer(ENV.fetch("BENCH_PASSES", "40"))
SMALL_PAYLOADS = 1000

# The issue's goals: iodine / library, median of the per-round ratios, at least.
GOALS = {
  "parse 1 MB" => { "oj" => 1.10, "json" => 2.0 },
  "parse small" => { "oj" => 1.0 },
  "generate 1 MB" => { "oj" => 1.10 }
}.freeze

abort "bench: Iodine::JSON is missing (rake compile builds the extension)" unless defined?(Iodine::JSON)
begin
  require "oj"
rescue LoadError
  warn "bench: Oj is not installed (apt-get install ruby-oj; bin/setup installs it): its baselines are skipped"
end
OJ = defined?(Oj) ? true : false

FIRST = %w[Ann Bob Chloé Dmitri Élodie Fatima Günther Hiroshi Ingrid José Kwame Léa Mateo Nadia Oluwaseun Priya
           Zoë Søren Ærin Yūki].freeze
LAST = %w[Smith Müller García Nowak Kowalski Ødegaard Dubois Rossi Tanaka Okafor Ivanova Sørensen Nguyễn
          O'Brien].freeze
CITIES = ["München", "São Paulo", "Kraków", "東京", "Zürich", "New York", "Reykjavík", "Montréal", "Αθήνα",
          "Київ"].freeze
WORDS = %w[alpha beta gamma delta order invoice shipped pending refund café naïve résumé update delete
           premium trial vip archived draft 商品 заказ].freeze

def sentence(rng, words)
  Array.new(words) { WORDS.sample(random: rng) }.join(" ")
end

# Free text with what JSON escapes: quotes, backslashes, newlines, tabs, a control character.
def note(rng)
  text = sentence(rng, rng.rand(4..16))
  text = %(#{text} "#{sentence(rng, 2)}") if rng.rand < 0.4
  text = "#{text}\n#{sentence(rng, 3)}\tend" if rng.rand < 0.3
  text = "#{text} C:\\path\\to\\file" if rng.rand < 0.1
  text = "#{text} \u0001 😀" if rng.rand < 0.05
  text
end

def record(rng, id)
  first = FIRST.sample(random: rng)
  {
    "id" => id,
    "uuid" => format("%08x-%04x-%04x-%04x-%012x", rng.rand(2**32), rng.rand(2**16), rng.rand(2**16), rng.rand(2**16),
                     rng.rand(2**48)),
    "name" => "#{first} #{LAST.sample(random: rng)}",
    "email" => "#{first.downcase}.#{id}@example.com",
    "active" => rng.rand < 0.7,
    "score" => (rng.rand * 100).round(rng.rand(1..4)),
    "balance" => (rng.rand - 0.3) * 10**rng.rand(1..7),
    "visits" => rng.rand(100_000),
    "external_id" => rng.rand < 0.05 ? rng.rand(2**64..2**80) : rng.rand(2**40),
    "manager_id" => rng.rand < 0.3 ? nil : rng.rand(id + 1),
    "tags" => WORDS.sample(rng.rand(0..5), random: rng),
    "address" => { "street" => "#{rng.rand(1..300)} #{sentence(rng, 2)} St.", "city" => CITIES.sample(random: rng),
                   "zip" => format("%05d", rng.rand(100_000)),
                   "geo" => { "lat" => (rng.rand * 180) - 90, "lng" => (rng.rand * 360) - 180 } },
    "note" => rng.rand < 0.8 ? note(rng) : nil,
    "history" => Array.new(rng.rand(0..3)) do
      { "at" => 1_700_000_000 + rng.rand(10**7), "event" => WORDS.sample(random: rng),
        "ok" => [true, false, nil].sample(random: rng), "amount" => rng.rand(0..1_000_000) / 100.0 }
    end
  }
end

# A JSON document of at least 1 MiB: an object holding the array of records.
def big_document(rng)
  records = []
  size = 0
  while size < 1024 * 1024
    records << record(rng, records.size)
    size += JSON.generate(records.last).bytesize + 1
  end
  JSON.generate({ "version" => 3, "generated_at" => "2024-06-07T12:00:00Z", "records" => records, "next" => nil })
end

# A ~200-byte API payload.
def small_payload(rng, id)
  JSON.generate({ "id" => id, "type" => %w[order user event].sample(random: rng), "user" => FIRST.sample(random: rng),
                  "active" => rng.rand < 0.5, "amount" => rng.rand(0..100_000) / 100.0, "currency" => "EUR",
                  "tags" => WORDS.sample(2, random: rng),
                  "meta" => { "v" => 2, "note" => note(rng)[0, 40], "ref" => nil } })
end

# Where `got` differs from `want` (a path and both values), or nil: same classes (1 is not 1.0),
# Floats bit for bit, Strings UTF-8 with the same bytes, Hash keys in the same order.
def difference(want, got)
  JsonDiff.call(want, got)
end

# Seconds for PASSES passes of `fn` over `inputs` (`while` loops: the least overhead Ruby has).
def seconds(fn, inputs)
  GC.start
  count = inputs.size
  start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  pass = 0
  while pass < PASSES
    i = 0
    while i < count
      fn.call(inputs[i])
      i += 1
    end
    pass += 1
  end
  Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
end

# "met" / "NOT met" / "not measured" for a ratio against its goal.
def verdict(value, goal)
  return "not measured" if value.nil? || value.nan? || value.infinite?

  value >= goal ? "met" : "NOT met"
end

rng = Random.new(20_240_607)
big = big_document(rng)
smalls = Array.new(SMALL_PAYLOADS) { |i| small_payload(rng, i) }
tree = JSON.parse(big)
generated = JSON.generate(tree)

# The parsers of the parse cases (the same value from each: see the check below).
PARSE = { "iodine" => ->(s) { Iodine::JSON.parse(s) },
          "oj" => ->(s) { Oj.load(s, mode: :strict, bigdecimal_load: :float) },
          "json" => ->(s) { JSON.parse(s) } }.freeze

# What a result must be: nil if it is, else what is wrong.
parse_check = ->(got, input) { difference(JSON.parse(input), got) }
sym_check = ->(got, input) { difference(JSON.parse(input, symbolize_names: true), got) }
text_check = lambda do |got, input|
  next "not a String: #{got.class}" unless got.is_a?(String)

  difference(input, JSON.parse(got))
end
# name => { inputs:, bytes: (JSON text per pass), check:, libs: { lib => callable } }
CASES = {
  "parse 1 MB" => {
    inputs: [big], bytes: big.bytesize, check: parse_check, libs: PARSE
  },
  "parse small" => {
    inputs: smalls, bytes: smalls.sum(&:bytesize), check: parse_check, libs: PARSE
  },
  "parse 1 MB symbols" => {
    inputs: [big], bytes: big.bytesize, check: sym_check,
    libs: { "iodine" => ->(s) { Iodine::JSON.parse(s, symbolize_names: true) },
            "oj" => ->(s) { Oj.load(s, mode: :strict, symbol_keys: true, bigdecimal_load: :float) },
            "json" => ->(s) { JSON.parse(s, symbolize_names: true) } }
  },
  "generate 1 MB" => {
    inputs: [tree], bytes: generated.bytesize, check: text_check,
    libs: { "iodine" => ->(o) { Iodine::JSON.generate(o) }, "oj" => ->(o) { Oj.dump(o, mode: :compat) },
            "json" => ->(o) { JSON.generate(o) } }
  }
}.freeze
NAMES = OJ ? %w[iodine oj json] : %w[iodine json]

$stdout.sync = true
versions = ["json #{JSON::VERSION}", OJ ? "Oj #{Oj::VERSION}" : "no Oj"].join(", ")
puts "bench: Iodine::JSON vs #{versions} (Ruby #{RUBY_VERSION}), #{ROUNDS} interleaved round(s), #{PASSES} passes " \
     "per timing; 1 MB document: #{rate(big.bytesize.to_f)} bytes, #{tree['records'].size} records; small: " \
     "#{SMALL_PAYLOADS} payloads of #{smalls.sum(&:bytesize) / SMALL_PAYLOADS} bytes on average"

# Checks every library's result (which also warms each up); a wrong one is left out of its case.
active = CASES.to_h do |kase, c|
  ok = NAMES.select do |name|
    problem = c[:inputs].lazy.filter_map do |input|
      c[:check].call(c[:libs].fetch(name).call(input), input)
    rescue StandardError => e
      "#{e.class}: #{e.message[0, 120]}"
    end.first
    warn "bench: #{kase}: #{name}'s result is wrong (#{problem}); left out of this case" if problem
    problem.nil?
  end
  [kase, ok]
end
same_text = Iodine::JSON.generate(tree) == generated
puts "checked: every result equals JSON.parse's value (generate: parses back to the tree); Iodine::JSON.generate's " \
     "text #{same_text ? 'is' : 'is NOT'} byte for byte JSON.generate's"
puts

# case => { lib => [{ ops:, mbs: } per round] } (NaN: left out)
results = CASES.to_h do |kase, c|
  runs = NAMES.to_h { |n| [n, []] }
  ROUNDS.times do |round|
    (round.even? ? NAMES : NAMES.reverse).each do |name|
      if active[kase].include?(name)
        secs = seconds(c[:libs].fetch(name), c[:inputs])
        run = { ops: c[:inputs].size * PASSES / secs, mbs: c[:bytes] * PASSES / secs / 1e6 }
        puts format("  %-20s round %d  %-7s %12s ops/s %9.1f MB/s", kase, round + 1, name, rate(run[:ops]), run[:mbs])
      else
        run = { ops: Float::NAN, mbs: Float::NAN }
      end
      runs[name] << run
    end
  end
  [kase, runs]
end

others = NAMES - ["iodine"]
puts
puts format("%-20s", "median MB/s (ops/s)") + NAMES.map { |n| format(" %20s", n) }.join +
     others.map { |o| format("   %-30s", "iodine/#{o}") }.join
results.each do |kase, runs|
  cells = NAMES.map do |n|
    mbs = median(runs[n].map { |r| r[:mbs] })
    ops = median(runs[n].map { |r| r[:ops] })
    format(" %20s", mbs.nan? ? "-" : format("%.1f (%s)", mbs, rate(ops)))
  end
  puts format("%-20s", kase) + cells.join + others.map { |o| format("   %-30s", ratio(runs, "iodine", o, :ops)) }.join
end
puts "(higher is better; iodine/x: the median of the per-round ratios of ops/s, each round's in brackets)"

puts
puts "Goals"
GOALS.each do |kase, goals|
  goals.each do |lib, goal|
    runs = results.fetch(kase)
    value = median(runs["iodine"].zip(runs[lib] || []).map { |a, b| b ? a[:ops] / b[:ops] : Float::NAN })
    label = format("%s: iodine / %s >= %.2fx", kase, lib == "oj" ? "Oj" : lib, goal)
    puts format("  %-40s %8s  %s", label, times(value), verdict(value, goal))
  end
end

# The headline figures, for bench/RESULTS.md: MB/s per case against the faster of Oj and the
# json gem (the ratio of MB/s is the ratio of ops/s: the same work on both sides).
record_results("json", results.map do |kase, runs|
  goals = (GOALS[kase] || {}).map { |lib, goal| format("≥ %.2f× %s", goal, lib == "oj" ? "Oj" : "json gem") }
  result_row("JSON #{kase}", runs, :mbs, unit: "MB/s", others: { "oj" => "Oj", "json" => "json gem" },
                                         goal: goals.empty? ? nil : goals.join(", "))
end)
