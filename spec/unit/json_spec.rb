# frozen_string_literal: true

require "open3"
require "spec_helper"
require_relative "../support/json_diff"
require "iodine"
require "json"

# Iodine::JSON (api.md §7.2): a strict RFC 8259 parser whose values equal the json gem's, and a
# generator whose text equals JSON.generate's, for the core types. The JSONTestSuite cases are
# read from ../shared/data (never copied here): y_ must parse, n_ must fail, i_ as decided below.
JSON_SUITE_DIR = ENV.fetch("JSON_TEST_SUITE_DIR", File.expand_path("../../../shared/data/json-test-suite", __dir__))

# The i_ cases whose surrogate escapes are broken: each lone or misordered half becomes U+FFFD, a
# valid pair its code point, so every String stays valid UTF-8 (the json gem keeps invalid bytes).
JSON_SUITE_SURROGATES = {
  "i_object_key_lone_2nd_surrogate" => { "\uFFFD" => 0 },
  "i_string_1st_surrogate_but_2nd_missing" => ["\uFFFD"],
  "i_string_1st_valid_surrogate_2nd_invalid" => ["\uFFFD\u1234"],
  "i_string_incomplete_surrogate_and_escape_valid" => ["\uFFFD\n"],
  "i_string_incomplete_surrogate_pair" => ["\uFFFDa"],
  "i_string_incomplete_surrogates_escape_valid" => ["\uFFFD\uFFFD\n"],
  "i_string_invalid_lonely_surrogate" => ["\uFFFD"],
  "i_string_invalid_surrogate" => ["\uFFFDabc"],
  "i_string_inverted_surrogates_U+1D11E" => ["\uFFFD\uFFFD"],
  "i_string_lone_second_surrogate" => ["\uFFFD"]
}.freeze

RSpec.describe Iodine::JSON do
  # Where `got` differs from `want`, or nil (spec/support/json_diff.rb).
  def json_diff(want, got, path = "$")
    JsonDiff.call(want, got, path)
  end

  # Runs `code` in a new Ruby with iodine loaded (for inputs that could crash the process);
  # returns [stdout, stderr, status].
  def in_subprocess(code)
    Open3.capture3(RbConfig.ruby, "-I#{ROOT}/lib", "-e", "require 'iodine'\n#{code}")
  end

  # Random data for round trips, big documents and the fuzz seeds (all from a seeded Random).
  def random_string(rng)
    pieces = ["a", "Zq", "42", " ", "\"", "\\", "/", "\n", "\t", "\b", "\f", "\r", "\u0000", "\u0001", "\u001f",
              "\u007f", "é", "日本", "😀", "\u2028", "\uFFFD", "{[", "\\u00e9", "true"]
    Array.new(rng.rand(0..10)) { pieces.sample(random: rng) }.join
  end

  def random_integer(rng)
    case rng.rand(4)
    when 0 then rng.rand(-1000..1000)
    when 1 then rng.rand(-(2**63)..(2**63))
    when 2 then rng.rand(2**64..2**200) * (rng.rand(2).zero? ? 1 : -1)
    else rng.rand(2**31)
    end
  end

  def random_float(rng)
    case rng.rand(4)
    when 0 then rng.rand * (10.0**rng.rand(-30..30))
    when 1 then -rng.rand(1_000_000) / 64.0
    when 2 then (rng.rand - 0.5).round(rng.rand(0..8))
    else
      loop do
        f = rng.bytes(8).unpack1("G")
        break f if f.finite?
      end
    end
  end

  def random_value(rng, depth = 0)
    case rng.rand(depth >= 4 ? 6 : 8)
    when 0, 1 then random_string(rng)
    when 2 then random_integer(rng)
    when 3, 4 then random_float(rng)
    when 5 then [true, false, nil].sample(random: rng)
    when 6 then Array.new(rng.rand(0..5)) { random_value(rng, depth + 1) }
    else Array.new(rng.rand(0..5)) { [random_string(rng), random_value(rng, depth + 1)] }.to_h
    end
  end

  # A JSON array of generated records, at least `bytes` long, as the Strings of its elements.
  def record_texts(rng, bytes)
    texts = []
    size = 2
    while size < bytes
      record = { "id" => texts.size, "name" => random_string(rng), "score" => random_float(rng),
                 "count" => random_integer(rng), "ok" => [true, false, nil],
                 "tags" => Array.new(3) { random_string(rng) },
                 "more" => { "x" => random_value(rng, 2), "y" => random_value(rng, 3) } }
      texts << JSON.generate(record)
      size += texts.last.bytesize + 1
    end
    texts
  end

  def nested(depth, open = "[", close = "]", inner = "")
    (open * depth) + inner + (close * depth)
  end

  describe ".parse" do
    describe "the JSONTestSuite" do
      if Dir.exist?(File.join(JSON_SUITE_DIR, "test_parsing"))
        Dir[File.join(JSON_SUITE_DIR, "test_parsing", "*.json")].sort.each do |path|
          name = File.basename(path, ".json")
          case name
          when /\Ay_/
            it "#{name} parses to JSON.parse's value (parse and parse!)" do
              text = File.binread(path).force_encoding(Encoding::UTF_8)
              want = JSON.parse(text)
              expect(json_diff(want, described_class.parse(text))).to be_nil
              expect(json_diff(want, described_class.parse!(text))).to be_nil
            end
          when /\An_/
            it "#{name} raises ParserError" do
              text = File.binread(path).force_encoding(Encoding::UTF_8)
              expect { described_class.parse(text) }.to raise_error(Iodine::JSON::ParserError)
              expect { described_class.parse!(text) }.to raise_error(Iodine::JSON::ParserError)
            end
          when /\Ai_number_/
            it "#{name} parses as JSON.parse does (Infinity, 0.0, bignum)" do
              text = File.binread(path).force_encoding(Encoding::UTF_8)
              expect(json_diff(JSON.parse(text), described_class.parse(text))).to be_nil
            end
          when *JSON_SUITE_SURROGATES.keys
            it "#{name} replaces each broken surrogate escape by U+FFFD" do
              got = described_class.parse(File.binread(path).force_encoding(Encoding::UTF_8))
              expect(json_diff(JSON_SUITE_SURROGATES.fetch(name), got)).to be_nil
            end
          when "i_structure_500_nested_arrays"
            it "#{name} is too deep by default and parses with max_nesting: false" do
              text = File.binread(path).force_encoding(Encoding::UTF_8)
              expect { described_class.parse(text) }.to raise_error(Iodine::JSON::NestingError)
              expect(json_diff(JSON.parse(text, max_nesting: false), described_class.parse(text, max_nesting: false)))
                .to be_nil
            end
          else
            # Invalid UTF-8 bytes, UTF-16 text and a UTF-8 BOM are all malformed here.
            it "#{name} raises ParserError (not UTF-8, or a BOM)" do
              text = File.binread(path).force_encoding(Encoding::UTF_8)
              expect { described_class.parse(text) }.to raise_error(Iodine::JSON::ParserError)
            end
          end
        end
      else
        it "is skipped: #{JSON_SUITE_DIR}/test_parsing is absent (set JSON_TEST_SUITE_DIR)" do
          skip "JSONTestSuite not found at #{JSON_SUITE_DIR}"
        end
      end
    end

    it "accepts top-level scalars and surrounding whitespace" do
      expect(described_class.parse("2")).to eq(2)
      expect(described_class.parse(" \"x\"\n")).to eq("x")
      expect(described_class.parse("null")).to be_nil
      expect(described_class.parse("\t-1.5e3 ")).to eq(-1500.0)
      expect(described_class.parse("true")).to be(true)
      expect(described_class.parse!("false")).to be(false)
    end

    it "keeps the last of duplicate keys, in the first key's place" do
      expect(json_diff({ "a" => 3, "b" => 2 }, described_class.parse('{"a":1,"b":2,"a":3}'))).to be_nil
    end

    it "builds objects of every size (Hashes made with room for their pairs) as JSON.parse does, keys in order" do
      [0, 1, 7, 8, 9, 15, 16, 17, 40, 300].each do |pairs|
        keys = Array.new(pairs) { |i| i.even? ? "k#{i}" : "a key longer than thirty-two bytes, number #{i}" }
        text = "{#{keys.each_with_index.map { |k, i| %("#{k}":#{i}) }.join(',')}}"
        docs = [text, "[#{text},#{text}]"]
        docs << text.sub("{", '{"k0":"first",') if pairs.positive? # a duplicate: the last value wins
        docs.each do |doc|
          got = described_class.parse(doc)
          expect(json_diff(JSON.parse(doc), got)).to be_nil, "#{pairs} pairs"
          expect(json_diff(JSON.parse(doc, symbolize_names: true), described_class.parse(doc, symbolize_names: true)))
            .to be_nil, "#{pairs} pairs, symbols"
        end
      end
    end

    it "tells apart cached keys that share a prefix, a length or a slot" do
      keys = %w[a b ab ba abc abcdefg abcdefgh abcdefghi abcdefgg abcdefghijklmnop abcdefghijklmnoq] +
             ["abcdefghijklmnopqrstuvwxyz012345", "abcdefghijklmnopqrstuvwxyz012346", "\\u0000", "x\\u0000", ""] +
             Array.new(2000) { |i| "key#{i}" }
      doc = "[#{keys.map { |k| %({"#{k}":"#{k}"}) }.join(',')}]"
      2.times do
        got = described_class.parse(doc)
        expect(json_diff(JSON.parse(doc), got)).to be_nil
        expect(got.all? { |h| h.keys.first == h.values.first }).to be(true)
      end
    end

    it "reads integers of any size exactly and -0 as the Integer 0" do
      %w[0 -0 9007199254740993 -9223372036854775809 18446744073709551616 123456789012345678901234567890123
         -98765432109876543210987654321].each do |text|
        expect(json_diff(Integer(text), described_class.parse(text))).to be_nil, text
      end
    end

    it "rounds floats as JSON.parse does, hard cases and 5,000 random ones" do
      hard = %w[0.1 -0.0 1e400 -1e400 1e-400 2.2250738585072011e-308 2.2250738585072014e-308 4.9e-324
                2.4703282292062327e-324 2.4703282292062328e-324 1.7976931348623157e308 1.7976931348623159e308
                9007199254740993.0 0.30000000000000004 123456789012345678901234567890.5e-10 1E2 1e+2 1.5E-05]
      rng = Random.new(7208)
      random = Array.new(5000) do
        digits = Array.new(rng.rand(1..25)) { rng.rand(10) }.join
        dot = rng.rand(digits.size + 1)
        mantissa = dot.zero? || dot == digits.size ? digits : "#{digits[0, dot]}.#{digits[dot..]}"
        mantissa = mantissa.sub(/\A0+(?=\d)/, "")
        mantissa = "0#{mantissa}" if mantissa.start_with?(".")
        "#{rng.rand(2).zero? ? '' : '-'}#{mantissa}e#{rng.rand(-340..320)}"
      end
      wrong = (hard + random).filter_map do |text|
        diff = json_diff(JSON.parse(text), described_class.parse(text))
        "#{text}: #{diff}" if diff
      end
      expect(wrong.first(10)).to eq([])
    end

    it "returns UTF-8 Strings, escapes decoded, a valid surrogate pair as its code point" do
      got = described_class.parse('["a\\u00e9\\"\\\\\\/\\b\\f\\n\\r\\t", "\\ud83d\\ude00", "日本", "\\u0000"]')
      expect(json_diff(["aé\"\\/\b\f\n\r\t", "😀", "日本", "\u0000"], got)).to be_nil
      expect(got.all?(&:valid_encoding?)).to be(true)
    end

    it "raises TypeError for a non-String input, non-Hash options, or a wrong argument count" do
      [nil, 12, :sym, ["[]"], 1.5].each do |bad|
        expect { described_class.parse(bad) }.to raise_error(TypeError)
        expect { described_class.parse!(bad) }.to raise_error(TypeError)
      end
      expect { described_class.parse("[]", "opts") }.to raise_error(TypeError)
      expect { described_class.parse("[]", 1) }.to raise_error(TypeError)
      expect { described_class.parse("[]", {}, {}) }.to raise_error(TypeError)
      expect { described_class.parse!("[]", {}, {}) }.to raise_error(TypeError)
      expect { described_class.parse }.to raise_error(TypeError)
      expect { described_class.parse! }.to raise_error(TypeError)
    end

    describe "options" do
      it "symbolize_names: true makes every key a Symbol" do
        text = '{"a":{"b":[{"c":1,"é":2}]},"":null}'
        want = { a: { b: [{ c: 1, é: 2 }] }, "": nil }
        expect(json_diff(want, described_class.parse(text, symbolize_names: true))).to be_nil
        expect(json_diff(want, described_class.parse!(text, symbolize_names: true))).to be_nil
        expect(json_diff(JSON.parse(text), described_class.parse(text, symbolize_names: false))).to be_nil
      end

      it "max_nesting: 100 by default, both for arrays and objects" do
        expect(described_class.parse(nested(100)).flatten).to eq([])
        expect(described_class.parse(nested(100, '{"a":', "}", "1")).dig(*Array.new(99, "a"))).to eq("a" => 1)
        expect { described_class.parse(nested(101)) }
          .to raise_error(Iodine::JSON::NestingError, /nesting of 101 is too deep/)
        expect { described_class.parse(nested(101, '{"a":', "}", "1")) }
          .to raise_error(Iodine::JSON::NestingError, /nesting of 101 is too deep/)
        expect { described_class.parse!(nested(101)) }.to raise_error(Iodine::JSON::NestingError)
      end

      it "max_nesting: N allows depth N, not N + 1" do
        expect(described_class.parse(nested(3), max_nesting: 3)).to eq([[[]]])
        expect { described_class.parse(nested(4), max_nesting: 3) }
          .to raise_error(Iodine::JSON::NestingError, /nesting of 4 is too deep/)
        expect(described_class.parse(nested(150), max_nesting: 150).flatten).to eq([])
      end

      it "max_nesting: false, nil or 0 means no limit" do
        [false, nil, 0].each do |off|
          expect(described_class.parse(nested(1000), max_nesting: off).flatten).to eq([]), off.inspect
        end
      end

      it "without a limit, 100,000 open brackets are a ParserError and 100,000 closed ones parse (no crash)" do
        out, err, status = in_subprocess(<<~RUBY)
          begin
            Iodine::JSON.parse("[" * 100_000, max_nesting: false)
            puts "open: parsed"
          rescue Iodine::JSON::ParserError => e
            puts "open: \#{e.class}"
          end
          v = Iodine::JSON.parse(("[" * 100_000) + ("]" * 100_000), max_nesting: false)
          depth = 0
          (v = v[0]; depth += 1) while v.is_a?(Array) && v.size == 1
          puts "closed: \#{depth} \#{v.inspect}"
          v = Iodine::JSON.parse(('{"k":' * 100_000) + "7" + ("}" * 100_000), max_nesting: false)
          depth = 0
          (v = v["k"]; depth += 1) while v.is_a?(Hash)
          puts "objects: \#{depth} \#{v.inspect}"
        RUBY
        want = "open: Iodine::JSON::ParserError\nclosed: 99999 []\nobjects: 100000 7\n"
        expect([out, status.success?]).to eq([want, true]), "stdout: #{out}\nstderr: #{err[0, 2000]}"
      end

      it "allow_nan: NaN and Infinity are errors by default, Floats with allow_nan: true" do
        %w[[NaN] [Infinity] [-Infinity] NaN -Infinity {"a":Infinity}].each do |text|
          expect { described_class.parse(text) }.to raise_error(Iodine::JSON::ParserError), text
          expect { described_class.parse(text, allow_nan: false) }.to raise_error(Iodine::JSON::ParserError), text
        end
        nan, inf, ninf = described_class.parse("[NaN, Infinity, -Infinity]", allow_nan: true)
        expect([nan.nan?, inf, ninf]).to eq([true, Float::INFINITY, -Float::INFINITY])
        expect(described_class.parse('{"a":-Infinity}', allow_nan: true)).to eq("a" => -Float::INFINITY)
        expect(described_class.parse!("NaN", allow_nan: true).nan?).to be(true)
      end

      it "freeze: true freezes every String, Array and Hash, and equal Strings are one object" do
        got = described_class.parse('{"a":"x","b":["x","y",{"x":"y","c":"a"}],"x":"x","e":[]}', freeze: true)
        strings = []
        containers = []
        walk = lambda do |v|
          case v
          when Hash then containers << v
                         v.each { |k, x| strings << k; walk.call(x) }
          when Array then containers << v
                          v.each { |x| walk.call(x) }
          when String then strings << v
          end
        end
        walk.call(got)
        expect(got).to eq("a" => "x", "b" => ["x", "y", { "x" => "y", "c" => "a" }], "x" => "x", "e" => [])
        expect(strings.reject(&:frozen?)).to eq([])
        expect(containers.reject(&:frozen?)).to eq([])
        expect(strings.group_by(&:itself).transform_values { |same| same.map(&:object_id).uniq.size })
          .to eq("a" => 1, "x" => 1, "b" => 1, "y" => 1, "c" => 1, "e" => 1)
      end

      # Values that would change the result if the option were honoured.
      { create_additions: true, object_class: Class.new(Hash), array_class: Class.new(Array),
        decimal_class: Rational }.each do |option, value|
        it "#{option} prints a warning and is otherwise ignored" do
          got = nil
          expect { got = described_class.parse('{"a":[1.5]}', option => value) }
            .to output(/WARNING: #{option} ignored on this JSON implementation\./).to_stderr_from_any_process
          expect(json_diff({ "a" => [1.5] }, got)).to be_nil
        end
      end
    end

    describe "errors" do
      it "ParserError is an EncodingError, NestingError a ParserError" do
        expect(Iodine::JSON::ParserError < EncodingError).to be(true)
        expect(Iodine::JSON::NestingError < Iodine::JSON::ParserError).to be(true)
        expect { described_class.parse("[") }.to raise_error(EncodingError)
      end

      it "name the byte offset of the problem" do
        { "[1,]" => 3, '{"a" 1}' => 5, "" => 0, "[1] x" => 4, "[1,,2]" => 3, "  ]" => 2, '{"a":1,}' => 7 }
          .each do |text, at|
          expect { described_class.parse(text) }
            .to raise_error(Iodine::JSON::ParserError, /\AMalformed JSON format.*\bat byte #{at}(?!\d)/m), text.inspect
        end
      end
    end

    describe "big documents (tokenized without the GVL)" do
      let(:texts) { record_texts(Random.new(64_064), 300_000) }

      it "give what small ones give: JSON.parse's values, with and without symbolize_names" do
        big = "[#{texts.join(',')}]"
        expect(big.bytesize).to be >= 300_000
        expect(json_diff(JSON.parse(big), described_class.parse(big))).to be_nil
        expect(json_diff(JSON.parse(big, symbolize_names: true), described_class.parse!(big, symbolize_names: true)))
          .to be_nil
        small = texts.first(20).map { |t| described_class.parse(t) }
        expect(json_diff(small, described_class.parse(big).first(20))).to be_nil
      end

      it "report the exact offset of an error near the start, the middle and the end" do
        [1, texts.size / 2, texts.size - 1].each do |k|
          head = "[#{texts[0, k].join(',')},"
          bad = "#{head},#{texts[k..].join(',')}]"
          expect { described_class.parse(bad) }
            .to raise_error(Iodine::JSON::ParserError, /at byte #{head.bytesize}(?!\d)/), "a second comma after #{k}"
        end
        trailing = "[#{texts.join(',')},]"
        expect { described_class.parse(trailing) }
          .to raise_error(Iodine::JSON::ParserError, /at byte #{trailing.bytesize - 1}(?!\d)/)
      end

      it "reject invalid UTF-8 and raw control characters deep inside" do
        middle = texts.size / 2
        [%("\xFF"), %("\xC3"), %("a\u0001b"), %("\xED\xA0\x80")].each do |bad|
          text = "[#{texts[0, middle].join(',')},#{bad},#{texts[middle..].join(',')}]"
          expect { described_class.parse(text) }.to raise_error(Iodine::JSON::ParserError), bad.inspect
        end
      end

      it "let another thread run while a several-MB document is tokenized" do
        unless described_class.method(:parse).source_location.nil?
          skip "Iodine::JSON.parse is a Ruby method: its interrupt checks would let the other thread in anyway"
        end
        rng = Random.new(8)
        words = Array.new(200) { Array.new(rng.rand(3..9)) { rng.rand(97..122).chr }.join }
        big = JSON.generate(Array.new(2000) do |i|
          { "id" => i, "text" => Array.new(600) { words.sample(random: rng) }.join(" "), "n" => [i, i * 0.5] }
        end)
        expect(big.bytesize).to be > 4_000_000
        clock = Process::CLOCK_MONOTONIC
        described_class.parse(big)
        alone = Array.new(3) do
          t = Process.clock_gettime(clock)
          described_class.parse(big)
          Process.clock_gettime(clock) - t
        end.min

        # The other thread notes the stretches of time it runs (a gap of more than 0.2 ms between
        # two of its clock reads starts a new one). Holding the GVL, `parse` could only let it in
        # at an interrupt check once its work is done (Ruby checks right after a C method
        # returns), so a stretch in the first half of a parse's time alone means the GVL was
        # released while tokenizing.
        stretches = []
        stop = false
        other = Thread.new do
          start = last = Process.clock_gettime(clock)
          until stop
            now = Process.clock_gettime(clock)
            if now - last > 0.0002
              stretches << [start, last]
              start = now
            end
            last = now
          end
          stretches << [start, last]
        end
        starts = []
        10.times do
          starts << Process.clock_gettime(clock)
          described_class.parse(big)
          break if starts.size >= 3 && starts.any? { |a| stretches.any? { |s, e| s < a + (alone / 2) && e > a } }
        end
        stop = true
        other.join
        early = starts.count { |a| stretches.any? { |s, e| s < a + (alone / 2) && e > a } }
        expect(early).to be > 0, "in #{starts.size} parses (#{(alone * 1000).round} ms each alone), the other " \
                                 "thread never ran in the first half"
      end
    end

    it "keeps its cached keys right when GC.compact moves objects (a child process: a stale key would crash)" do
      out, err, status = in_subprocess(<<~RUBY)
        doc = '{"alpha_key":1,"beta_key":[2],"gamma":{"delta_key":3}}'
        want = {"alpha_key" => 1, "beta_key" => [2], "gamma" => {"delta_key" => 3}}
        raise "before" unless Iodine::JSON.parse(doc) == want && Iodine::JSON.parse(doc, symbolize_names: true).key?(:alpha_key)
        filler = Array.new(20_000) { |i| "filler \#{i}" }
        GC.verify_compaction_references(double_heap: true, toward: :empty)
        GC.compact
        3.times { raise "after" unless Iodine::JSON.parse(doc) == want }
        raise "symbols" unless Iodine::JSON.parse(doc, symbolize_names: true) == {alpha_key: 1, beta_key: [2], gamma: {delta_key: 3}}
        puts filler.size
      RUBY
      expect([out, err, status.success?]).to eq(["20000\n", "", true])
    end

    it "gives the right values under GC.stress" do
      text = '{"name":"日本 \\u00e9","list":[1,2.5,-3e2,12345678901234567890,true,false,null,"x"],' \
             '"o":{"k":[{"z":"w"}]}}'
      want = JSON.parse(text)
      GC.stress = true
      got = Array.new(3) { described_class.parse(text) }
      sym = described_class.parse(text, symbolize_names: true)
      frozen = described_class.parse(text, freeze: true)
      GC.stress = false
      got.each { |g| expect(json_diff(want, g)).to be_nil }
      expect(json_diff(JSON.parse(text, symbolize_names: true), sym)).to be_nil
      expect(json_diff(want, frozen)).to be_nil
    ensure
      GC.stress = false
    end

    it "returns a value or raises ParserError for mutated documents, JSON.parse's value when both parse" do
      rng = Random.new(4242)
      seeds = ['{"a":[1,2.5,-3e-2,true,false,null],"b":{"c":"d\\n\\u00e9"}}', '[0,-0,1E+2,"\\ud83d\\ude00"]',
               '"plain"', "12345678901234567890", '{"":{"":[[],{}]}}', '[1.5e308,"\\"\\\\\\/"]']
      seeds += Array.new(20) { JSON.generate(random_value(rng)) }
      alphabet = "[]{}:,\"\\0123456789.eE+-tfnrulasNIy \n\t/".chars + ["\u00e9", "\xFF".b, "\x00", "\uFEFF"]
      problems = []
      compared = 0
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 20
      3000.times do
        break if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

        text = seeds.sample(random: rng).b
        rng.rand(1..3).times do
          at = text.empty? ? 0 : rng.rand(text.bytesize)
          case rng.rand(5)
          when 0 then text[at] = rng.rand(256).chr unless text.empty?
          when 1 then text.insert(at, alphabet.sample(random: rng).b)
          when 2 then text.slice!(at, rng.rand(1..3))
          when 3 then text = text.byteslice(0, at)
          else text.insert(at, text.byteslice(at, rng.rand(1..8)).to_s)
          end
        end
        text.force_encoding(Encoding::UTF_8)
        begin
          got = described_class.parse(text)
          ok = true
        rescue Iodine::JSON::ParserError
          ok = false
        rescue Exception => e # rubocop:disable Lint/RescueException
          problems << "#{text.inspect}: #{e.class}: #{e.message[0, 80]}"
          next
        end
        next unless ok

        if !text.valid_encoding? || text.start_with?("\uFEFF")
          problems << "#{text.inspect}: parsed, but it is not UTF-8 or starts with a BOM"
          next
        end
        # The json gem rejects some broken surrogate escapes, keeps others as invalid bytes or
        # joins them wrongly: there is nothing to compare with.
        next if text.match?(/\\u[dD][89a-fA-F]/)

        begin
          want = JSON.parse(text)
        rescue JSON::NestingError
          next
        rescue StandardError
          problems << "#{text.inspect}: parsed to #{got.inspect[0, 60]}, JSON.parse rejects it"
          next
        end
        compared += 1
        diff = json_diff(want, got)
        problems << "#{text.inspect}: #{diff}" if diff
      end
      expect(problems.first(10)).to eq([])
      expect(compared).to be > 300 # enough mutants stay valid JSON to compare values
    end
  end

  describe ".generate" do
    it "writes what JSON.generate writes for the core types" do
      values = [nil, true, false, 0, -1, 2**62, 2**64, -(2**100), 10**40, "", "plain", :sym, [], {}, 1.5,
                [1, "two", :three, 4.0, nil, [true, [false]]], { "a" => 1, b: [2, { c: nil }] },
                { 1 => 2, nil => 3, a: 4, 1.5 => 5, "s" => 6, [1] => 7 }]
      values.each do |v|
        expect(described_class.generate(v)).to eq(JSON.generate(v)), v.inspect
      end
      expect(described_class.generate(:sym)).to eq('"sym"')
      expect(described_class.generate({ 1 => 2, nil => 3, a: 4 })).to eq('{"1":2,"":3,"a":4}')
    end

    it "escapes quote, backslash and control characters as the json gem does, and nothing else" do
      all = (0..127).map(&:chr).join + "é日本😀\u2028\u2029\uFFFF/"
      expect(described_class.generate(all)).to eq(JSON.generate(all))
      expect(described_class.generate({ all => [all] })).to eq(JSON.generate({ all => [all] }))
      expect(described_class.generate("a/b é \u007f")).to eq("\"a/b é \u007f\"")
      expect(described_class.generate("\"\\\n\u0001")).to eq('"\\"\\\\\\n\\u0001"')
    end

    it "returns a UTF-8 String; dump and stringify are the same" do
      v = { "k" => ["é", 1.25, nil] }
      out = described_class.generate(v)
      expect(out.encoding).to eq(Encoding::UTF_8)
      expect(described_class.dump(v)).to eq(out)
      expect(described_class.stringify(v)).to eq(out)
    end

    it "writes Floats as JSON.generate does" do
      texts = { 1.0e20 => "1.0e+20", 1.5e-5 => "1.5e-05", 0.0001 => "0.0001", 100.0 => "100.0", -0.0 => "-0.0",
        0.1 => "0.1", 1e16 => "1.0e+16", 1e15 => "1.0e+15", 1e14 => "100000000000000.0", 5e-324 => "5.0e-324",
        Float::MAX => "1.7976931348623157e+308", 1 / 3.0 => "0.3333333333333333",
        # Exactly halfway between two 17-digit texts: Ruby takes the even last digit.
        702_219_414_104_867.25 => "702219414104867.2", -172_680_428_933_670.625 => "-172680428933670.62",
        # A fraction below 1e16 stays in fixed notation, a whole number from 1e15 on does not.
        1_000_000_000_000_000.5 => "1000000000000000.5", 1_234_567_890_123_456.8 => "1234567890123456.8",
        999_999_999_999_999.0 => "999999999999999.0", 9_999_999_999_999_998.0 => "9.999999999999998e+15" }
      wrong = texts.filter_map do |f, text|
        expect(JSON.generate(f)).to eq(text) # what this table claims
        got = [described_class.generate(f), described_class.generate([f])]
        "#{f.inspect}: #{got.inspect}, expected #{text}" if got != [text, "[#{text}]"]
      end
      expect(wrong).to eq([])
    end

    it "writes 5,000 random Floats (random bit patterns too) as JSON.generate does" do
      rng = Random.new(1_000_003)
      floats = Array.new(5000) { random_float(rng) }
      wrong = floats.filter_map do |f|
        ours = described_class.generate([f])
        want = JSON.generate([f])
        "#{f.inspect} (bits #{[f].pack('G').unpack1('H*')}): #{ours}, expected #{want}" if ours != want
      end
      expect(wrong.first(10)).to eq([])
    end

    it "inserts the to_json of classes that define it, and writes other objects' to_s as a String" do
      custom = Class.new { def to_json(*_args) = '{"custom":[1,2]}' }.new
      plain = Class.new { def to_s = %(P(1, "2") é) }.new
      expect(described_class.generate([custom, 1])).to eq('[{"custom":[1,2]},1]')
      expect(described_class.generate({ "p" => plain })).to eq('{"p":"P(1, \\"2\\") é"}')
      expect(described_class.generate([plain])).to eq(JSON.generate([plain]))
    end

    it "raises GeneratorError for NaN and Infinity unless allow_nan: true" do
      [Float::NAN, Float::INFINITY, -Float::INFINITY].each do |f|
        expect { described_class.generate([f]) }.to raise_error(Iodine::JSON::GeneratorError)
        expect { described_class.generate({ "a" => f }) }.to raise_error(Iodine::JSON::GeneratorError)
      end
      v = [Float::NAN, Float::INFINITY, -Float::INFINITY]
      expect(described_class.generate(v, allow_nan: true)).to eq("[NaN,Infinity,-Infinity]")
      expect(described_class.generate(v, allow_nan: true)).to eq(JSON.generate(v, allow_nan: true))
    end

    it "raises GeneratorError for a cycle, also with max_nesting: false" do
      array = []
      array << array
      hash = {}
      hash["self"] = [hash]
      Timeout.timeout(10) do
        expect { described_class.generate(array) }.to raise_error(Iodine::JSON::GeneratorError)
        expect { described_class.generate(hash) }.to raise_error(Iodine::JSON::GeneratorError)
      end
      out, err, status = in_subprocess(<<~RUBY)
        a = []
        a << a
        h = {}
        h["self"] = [h]
        [a, h].each do |v|
          Iodine::JSON.generate(v, max_nesting: false)
          puts "generated"
        rescue Exception => e
          puts e.class
        end
      RUBY
      expect([out, status.success?])
        .to eq(["Iodine::JSON::GeneratorError\nIodine::JSON::GeneratorError\n", true]), "stderr: #{err[0, 2000]}"
    end

    it "raises GeneratorError past max_nesting (100 by default)" do
      deep = ->(n) { n.times.reduce([]) { |a, _| [a] } }
      expect(described_class.generate(deep.call(99))).to eq(JSON.generate(deep.call(99)))
      expect { described_class.generate(deep.call(100)) }
        .to raise_error(Iodine::JSON::GeneratorError, /nesting of 101 is too deep/)
      objects = 100.times.reduce(1) { |v, _| { "a" => v } }
      expect(described_class.generate(objects)).to eq(JSON.generate(objects))
      expect { described_class.generate({ "a" => objects }) }
        .to raise_error(Iodine::JSON::GeneratorError, /nesting of 101 is too deep/)
      expect { described_class.generate(deep.call(3), max_nesting: 3) }
        .to raise_error(Iodine::JSON::GeneratorError, /nesting of 4 is too deep/)
      expect(described_class.generate(deep.call(2), max_nesting: 3)).to eq("[[[]]]")
    end

    it "raises GeneratorError for a String that is not UTF-8, converts other encodings to UTF-8" do
      ["\xFF", "ok\xC3", "\xED\xA0\x80"].each do |bad|
        expect { described_class.generate([bad]) }.to raise_error(Iodine::JSON::GeneratorError), bad.inspect
        expect { described_class.generate({ bad => 1 }) }.to raise_error(Iodine::JSON::GeneratorError), bad.inspect
      end
      latin = "caf\xE9".dup.force_encoding(Encoding::ISO_8859_1)
      expect(described_class.generate([latin])).to eq('["café"]')
      expect(described_class.generate({ latin => latin })).to eq('{"café":"café"}')
    end

    it "raises errors that are EncodingErrors" do
      expect(Iodine::JSON::GeneratorError < EncodingError).to be(true)
      expect { described_class.generate([Float::NAN]) }.to raise_error(EncodingError)
    end

    it "round-trips 300 random trees, its text equal to JSON.generate's" do
      rng = Random.new(31_337)
      problems = []
      300.times do
        tree = random_value(rng)
        text = described_class.generate(tree)
        problems << "text differs for #{tree.inspect[0, 120]}" if text != JSON.generate(tree)
        diff = json_diff(tree, described_class.parse(text))
        problems << "#{text[0, 120]}: #{diff}" if diff
      end
      expect(problems.first(10)).to eq([])
    end

    it "gives the right text under GC.stress" do
      tree = { "name" => "日本 é\n", list: [1, 2.5, 2**70, true, false, nil, :sym],
               "o" => { "k" => [{ "z" => "w" }] } }
      want = JSON.generate(tree)
      GC.stress = true
      got = Array.new(3) { described_class.generate(tree) }
      GC.stress = false
      expect(got).to eq([want] * 3)
    ensure
      GC.stress = false
    end
  end
end
