# frozen_string_literal: true

# Compares parsed JSON values strictly (the JSON specs and bench/json.rb check with it).
module JsonDiff
  # Where `got` differs from `want` ("$[2].a: ..."), or nil when they are the same JSON value:
  # same classes (1 is not 1.0), Floats bit for bit (NaN equals NaN), Strings UTF-8 with the same
  # bytes, Hash keys in the same order.
  def self.call(want, got, path = "$")
    if want.class != got.class
      return "#{path}: #{got.class} #{got.inspect[0, 60]}, expected #{want.class} #{want.inspect[0, 60]}"
    end

    case want
    when Hash
      return "#{path}: keys #{got.keys.inspect[0, 120]}, expected #{want.keys.inspect[0, 120]}" if want.keys != got.keys

      want.each_key.lazy.filter_map { |k| call(want[k], got[k], "#{path}.#{k}") }.first
    when Array
      return "#{path}: #{got.size} elements, expected #{want.size}" if want.size != got.size

      want.each_index.lazy.filter_map { |i| call(want[i], got[i], "#{path}[#{i}]") }.first
    when String
      return "#{path}: encoding #{got.encoding}" unless got.encoding == Encoding::UTF_8
      return "#{path}: #{got.inspect[0, 60]}, expected #{want.inspect[0, 60]}" unless got.b == want.b
    when Float
      same = (want.nan? && got.nan?) || [want].pack("G") == [got].pack("G")
      return "#{path}: #{got.inspect}, expected #{want.inspect}" unless same
    else
      return "#{path}: #{got.inspect[0, 60]}, expected #{want.inspect[0, 60]}" unless want == got
    end
    nil
  end
end
