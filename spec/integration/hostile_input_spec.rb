# encoding: binary
# frozen_string_literal: true

require "spec_helper"

# A seeded hostile-input run: thousands of valid, mutated, truncated, oversized, badly framed,
# binary and pipelined requests over many short connections, each read with a short deadline.
# Every response must be HTTP/1.x with a 3-digit status and never a 5xx other than 503; the
# server must stay up, answer, keep its 4 workers and not grow.
#
#   rspec spec/integration/hostile_input_spec.rb                    # the fixed seed
#   FUZZ_SEED=123 rspec spec/integration/hostile_input_spec.rb      # another seed
#   FUZZ_SEED=123 FUZZ_CASES=17,2048 rspec spec/...                 # replay some cases
#
# FUZZ_COUNT (cases to generate, default 4000), FUZZ_SECONDS (time budget, default 60) and
# FUZZ_THREADS (default 8) tune the run. Each case has its own Random, derived from the seed
# and its index, so a case's bytes don't depend on the others or on thread timing. Failing
# cases are written, bytes and all, to a file in Dir.tmpdir whose name is printed.
module HostileInput
  DEFAULT_SEED = 20_251_202
  MIN_CASES = 3_000
  READ_DEADLINE = 0.5  # per connection, for anything that may not be answered
  VALID_DEADLINE = 3.0 # per connection, for unmutated valid requests (they must be answered)
  HOST = "127.0.0.1"

  # One connection's worth of bytes. `expected`: for unmutated valid requests, the responses
  # ([status, body]) they must get, in order; `prefix`: the same for the valid requests in
  # front of a hostile one (each, if it arrives, must be right). `methods`: request methods
  # in order when known (HEAD responses have no body).
  Case = Struct.new(:index, :kind, :bytes, :requests, :expected, :prefix, :methods, :half_close, :fragments,
                    keyword_init: true)

  # A response seen on the wire.
  Response = Struct.new(:version, :status, :head, :body, :complete)

  # The result of reading a response stream: responses, and what went wrong, if anything.
  Parsed = Struct.new(:responses, :error)

  KINDS = {
    valid: 14, bitflip: 10, substitute: 10, truncate: 10, content_length: 10, chunked: 13,
    junk: 6, long_lines: 7, bad_syntax: 12, pipelined_mix: 8, big_body: 3
  }.freeze
  KIND_TABLE = KINDS.flat_map { |k, w| [k] * w }.freeze

  TOKEN_HEADER = /\A[!#$%&'*+\-.^_`|~0-9A-Za-z]+:/n

  module_function

  # ---------------------------------------------------------------- case generation

  def build(index, seed)
    rng = Random.new(seed)
    kind = KIND_TABLE[rng.rand(KIND_TABLE.size)]
    c = Case.new(index: index, kind: kind, requests: 1, half_close: false, fragments: nil)
    send(:"gen_#{kind}", rng, c)
    c.bytes = c.bytes.b
    # Some cases arrive in pieces, a few milliseconds apart.
    c.fragments = split_points(rng, c.bytes.bytesize) if rng.rand < 0.12 && c.bytes.bytesize > 1
    c
  end

  def split_points(rng, size)
    Array.new(rng.rand(1..4)) { rng.rand(1...size) }.uniq.sort
  end

  def pick(rng, list)
    list[rng.rand(list.size)]
  end

  def body_bytes(rng, n)
    rng.rand < 0.5 ? rng.bytes(n) : ("a".."z").to_a.then { |az| Array.new(n) { az[rng.rand(26)] }.join }
  end

  def extra_headers(rng)
    Array.new(rng.rand(0..3)) do
      pick(rng, ["Accept: */*", "User-Agent: fuzz/1.0", "X-Forwarded-Proto: https", "Cookie: a=1; b=2",
                 "Accept-Encoding: gzip", "X-Request-Id: #{rng.rand(1 << 32)}", "Cache-Control: no-cache"])
    end.map { |h| "#{h}\r\n" }.join
  end

  # One valid request: [bytes, [status, body], method]. `close`: ends with Connection: close.
  def valid_request(rng, close:, head_ok: false)
    conn = close ? "Connection: close\r\n" : ""
    host = "Host: #{pick(rng, [HOST, 'localhost', 'example.com:8080', 'x'])}\r\n"
    case rng.rand(head_ok ? 9 : 8)
    when 0, 1
      ["GET / HTTP/1.1\r\n#{host}#{extra_headers(rng)}#{conn}\r\n", ["200", "ok"], "GET"]
    when 2
      ["GET /workers HTTP/1.1\r\n#{host}#{conn}\r\n", ["200", "4"], "GET"]
    when 3
      ["GET /nope?x=#{rng.rand(1000)} HTTP/1.1\r\n#{host}#{conn}\r\n", ["404", "not found"], "GET"]
    when 4
      n = rng.rand(0..3000)
      ["POST /echo HTTP/1.1\r\n#{host}Content-Length: #{n}\r\n#{extra_headers(rng)}#{conn}\r\n#{body_bytes(rng, n)}",
       ["200", n.to_s], "POST"]
    when 5
      body = body_bytes(rng, rng.rand(0..3000))
      ["POST /echo HTTP/1.1\r\n#{host}Transfer-Encoding: chunked\r\n#{conn}\r\n#{chunked(rng, body)}",
       ["200", body.bytesize.to_s], "POST"]
    when 6
      n = rng.rand(1..2000)
      ["PUT /echo HTTP/1.1\r\n#{host}Content-Length: #{n}\r\nExpect: 100-continue\r\n#{conn}\r\n#{body_bytes(rng, n)}",
       ["200", n.to_s], "PUT"]
    when 7
      # HTTP/1.0: the server closes after it (no keep-alive asked for), Host optional.
      ["GET / HTTP/1.0\r\n#{rng.rand < 0.5 ? host : ''}\r\n", ["200", "ok"], "GET"]
    else
      ["HEAD / HTTP/1.1\r\n#{host}#{conn}\r\n", ["200", ""], "HEAD"]
    end
  end

  # A valid chunked encoding of `body`: random chunk sizes, sometimes extensions and trailers.
  def chunked(rng, body)
    out = +""
    pos = 0
    while pos < body.bytesize
      n = [rng.rand(1..1200), body.bytesize - pos].min
      size = n.to_s(16)
      size = size.upcase if rng.rand < 0.3
      size = "0#{size}" if rng.rand < 0.1
      ext = rng.rand < 0.15 ? ";ext=#{rng.rand(100)}" : ""
      out << "#{size}#{ext}\r\n" << body.byteslice(pos, n) << "\r\n"
      pos += n
    end
    out << "0\r\n"
    out << "X-Trailer: #{rng.rand(100)}\r\n" if rng.rand < 0.2
    out << "\r\n"
  end

  # 1..5 valid requests in one write; only the last may close or be a HEAD.
  def valid_pipeline(rng, count: rng.rand(1..5), close: rng.rand < 0.5)
    reqs = Array.new(count) do |i|
      last = i == count - 1
      valid_request(rng, close: last && close, head_ok: last)
    end
    # HTTP/1.0 closes the connection: nothing after it would be answered.
    cut = reqs.index { |bytes, _, _| bytes.include?(" HTTP/1.0\r\n") }
    reqs = reqs[0..cut] if cut
    reqs
  end

  def gen_valid(rng, c)
    reqs = valid_pipeline(rng)
    c.bytes = reqs.map(&:first).join
    c.requests = reqs.size
    c.expected = reqs.map { |r| r[1] }
    c.methods = reqs.map(&:last)
  end

  # A base to mutate: mostly one request that closes the connection when it survives.
  def mutation_base(rng)
    reqs = rng.rand < 0.8 ? [valid_request(rng, close: true)] : valid_pipeline(rng, count: rng.rand(2..3), close: true)
    [reqs.map(&:first).join.b, reqs.size]
  end

  def gen_bitflip(rng, c)
    bytes, c.requests = mutation_base(rng)
    rng.rand(1..8).times do
      i = rng.rand(bytes.bytesize)
      bytes.setbyte(i, bytes.getbyte(i) ^ (1 << rng.rand(8)))
    end
    c.bytes = bytes
  end

  INTERESTING = ["\r", "\n", "\r\n", " ", "\t", ":", ";", ",", "\0", "\x7f", "\xff", "\x80", "%", "/", "?", "#",
                 "0", "9", "-", "\"", "\\", "HTTP/1.1", "\r\n\r\n", "chunked", "Content-Length: ", "Host: x\r\n"].map(&:b)

  def gen_substitute(rng, c)
    bytes, c.requests = mutation_base(rng)
    rng.rand(1..4).times do
      i = rng.rand(bytes.bytesize)
      len = [rng.rand(1..3), bytes.bytesize - i].min
      with = rng.rand < 0.5 ? rng.bytes(len) : pick(rng, INTERESTING)
      case rng.rand(3)
      when 0 then bytes[i, len] = with                 # replace
      when 1 then bytes[i, 0] = with                   # insert
      else bytes[i, len] = ""                          # delete
      end
      bytes = bytes.b
    end
    c.bytes = bytes
  end

  def gen_truncate(rng, c)
    reqs = valid_pipeline(rng, count: rng.rand(1..3), close: true)
    bytes = reqs.map(&:first).join.b
    c.requests = reqs.size
    c.bytes = bytes.byteslice(0, rng.rand(1...bytes.bytesize))
    c.half_close = rng.rand < 0.6 # EOF right away (else the server waits for the rest)
  end

  HUGE_LENGTHS = %w[99999999999999999999999999 18446744073709551615 18446744073709551616
                    9223372036854775807 9223372036854775808 52428801 104857600 4294967296 4294967295].freeze
  BAD_LENGTHS = ["-1", "-0", "-99999999999999999999", "abc", "1e3", "0x10", "+5", " 5", "5 ", "5,5", "5, 6", "",
                 "5\x00", "\xd9\xa3", "5.0", "05", "0005", "1_000", "Infinity", "NaN", "\t7", "5;", "5 5"].freeze

  def gen_content_length(rng, c)
    close = rng.rand < 0.7 ? "Connection: close\r\n" : ""
    body = body_bytes(rng, rng.rand(0..200))
    value = rng.rand < 0.45 ? pick(rng, HUGE_LENGTHS) : pick(rng, BAD_LENGTHS)
    headers = case rng.rand(6)
              when 0 then "Content-Length: #{value}\r\n"
              when 1 then "Content-Length: #{body.bytesize}\r\nContent-Length: #{value}\r\n"
              when 2 then "Content-Length: #{body.bytesize}\r\nContent-Length: #{body.bytesize}\r\n"
              when 3 then "Content-Length: #{value}\r\nTransfer-Encoding: chunked\r\n"
              when 4 then "Content-Length: #{[body.bytesize - rng.rand(1..20), 0].max}\r\n" # shorter: the rest is junk
              else "Content-Length: #{body.bytesize + rng.rand(1..50)}\r\n"                   # longer: never completes
              end
    method = pick(rng, %w[POST PUT GET PATCH DELETE])
    tail = rng.rand < 0.3 ? "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" : ""
    c.bytes = "#{method} /echo HTTP/1.1\r\nHost: #{HOST}\r\n#{headers}#{close}\r\n".b + body + tail
    c.half_close = rng.rand < 0.5
  end

  BAD_HEX = ["zz", "-1", "0x5", "5 5", " 5", "", "g", "+5", "1" * 40, "f" * 17, "\x005", "5\x00", "٥", "0.5",
             "5\t", "-0", "0" * 100 + "5"].freeze
  HUGE_CHUNKS = %w[7fffffffffffffff ffffffffffffffff 10000000000000000 4000000 3200001 ffffffff 80000000].freeze
  ODD_TE = ["chunked, gzip", "gzip, chunked", "gzip", "identity", "Chunked", "CHUNKED", " chunked", "xchunked",
            "chunked;q=1", "chunked\r\nTransfer-Encoding: chunked", "chunked, chunked", "chunked\r\nContent-Length: 3",
            "", "\x00chunked"].freeze

  def gen_chunked(rng, c)
    te = "chunked"
    body = body_bytes(rng, rng.rand(1..600))
    good = chunked(rng, body)
    chunks = case rng.rand(11)
             when 0 # bad hex size
               "#{pick(rng, BAD_HEX)}\r\n#{body}\r\n0\r\n\r\n"
             when 1 # missing CRLF after the data
               "#{body.bytesize.to_s(16)}\r\n#{body}#{pick(rng, ['', 'XX', "\n", "\r", ' '])}0\r\n\r\n"
             when 2 # missing CRLF after the size, or bare LFs
               rng.rand < 0.5 ? "#{body.bytesize.to_s(16)}#{body}\r\n0\r\n\r\n" : "#{body.bytesize.to_s(16)}\n#{body}\n0\n\n"
             when 3 # huge size, a little data
               "#{pick(rng, HUGE_CHUNKS)}\r\n#{body}"
             when 4 # chunk extensions: long, many, quoted, with control bytes
               ext = pick(rng, [";a=b", ";#{'x' * rng.rand(100..40_000)}", ";a=\"q;\\\"x\"", ";a" * rng.rand(10..5000),
                                ";a=\x00b", ";a=\rb", "; a = b", ";=", ";;;"])
               "#{body.bytesize.to_s(16)}#{ext}\r\n#{body}\r\n0#{ext}\r\n\r\n"
             when 5 # trailers: many, long, malformed, forbidden
               trailer = pick(rng, ["X-T: 1\r\n" * rng.rand(1..3000), "X-T: #{'v' * rng.rand(100..40_000)}\r\n",
                                    "bad trailer\r\n", "Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n",
                                    ": x\r\n", "X-T:\x00\r\n", "Host: evil\r\n"])
               "#{body.bytesize.to_s(16)}\r\n#{body}\r\n0\r\n#{trailer}\r\n"
             when 6 # no last chunk
               "#{body.bytesize.to_s(16)}\r\n#{body}\r\n"
             when 7 # data longer or shorter than announced
               "#{(body.bytesize + pick(rng, [-1, 1, 100])).clamp(0, 1 << 20).to_s(16)}\r\n#{body}\r\n0\r\n\r\n"
             when 8 # odd Transfer-Encoding values with a good body
               te = pick(rng, ODD_TE)
               good
             when 9 # a valid body, mutated
               g = good.b
               rng.rand(1..3).times { g.setbyte(i = rng.rand(g.bytesize), g.getbyte(i) ^ (1 << rng.rand(8))) }
               g
             else # a valid body then a pipelined request
               good + "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
             end
    close = rng.rand < 0.7 ? "Connection: close\r\n" : ""
    c.bytes = "POST /echo HTTP/1.1\r\nHost: #{HOST}\r\nTransfer-Encoding: #{te}\r\n#{close}\r\n".b + chunks.b
    c.half_close = rng.rand < 0.5
  end

  def gen_junk(rng, c)
    c.bytes = case rng.rand(8)
              when 0, 1 then rng.bytes(rng.rand(1..4096))
              when 2 then "GET #{rng.bytes(rng.rand(1..2000))}"
              when 3 then "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".b + rng.bytes(rng.rand(0..500)) # TLS hello
              when 4 then "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".b + rng.bytes(rng.rand(0..100))               # h2 preface
              when 5 then "\r\n" * rng.rand(1..5000) + (rng.rand < 0.5 ? "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" : "")
              when 6 then pick(rng, ["\0", "\xff", " ", "\n", "A"]).b * rng.rand(1..50_000)
              else "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n#{rng.bytes(rng.rand(5..3000))}"
              end
    c.half_close = rng.rand < 0.5
  end

  # Bodies over the 64 KiB the server keeps in memory (it spills them to a temporary file):
  # whole, cut short, or with their chunked framing broken past the spill point.
  def gen_big_body(rng, c)
    body = rng.bytes(rng.rand(65_000..400_000))
    head = "POST /echo HTTP/1.1\r\nHost: #{HOST}\r\nConnection: close\r\n"
    case rng.rand(4)
    when 0
      c.bytes = "#{head}Content-Length: #{body.bytesize}\r\n\r\n".b + body
      c.expected = [["200", body.bytesize.to_s]]
      c.methods = ["POST"]
    when 1
      c.bytes = "#{head}Transfer-Encoding: chunked\r\n\r\n".b + chunked(rng, body).b
      c.expected = [["200", body.bytesize.to_s]]
      c.methods = ["POST"]
    when 2
      c.bytes = "#{head}Content-Length: #{body.bytesize}\r\n\r\n".b + body.byteslice(0, rng.rand(1...body.bytesize))
      c.half_close = rng.rand < 0.7
    else
      framed = chunked(rng, body).b
      at = framed.index("\r\n", rng.rand(66_000...framed.bytesize - 10)) || framed.bytesize
      framed[at, 2] = pick(rng, ["zz\r\n", "\r\nzz\r\n", "\r\nffffffffffffffffff\r\n", "\n", ""])
      c.bytes = "#{head}Transfer-Encoding: chunked\r\n\r\n".b + framed
      c.half_close = rng.rand < 0.5
    end
  end

  LINE_SIZES = [100, 4000, 8000, 8185, 8188, 8189, 8190, 8191, 8192, 8193, 9000, 16_384, 32_768, 33_000, 70_000,
                200_000].freeze

  def gen_long_lines(rng, c)
    close = "Connection: close\r\n"
    c.bytes = case rng.rand(6)
              when 0 # one long header line
                "GET / HTTP/1.1\r\nHost: x\r\nX-Long: #{'v' * pick(rng, LINE_SIZES)}\r\n#{close}\r\n"
              when 1 # a long request target (path or query)
                target = rng.rand < 0.5 ? "/#{'p' * pick(rng, LINE_SIZES)}" : "/?q=#{'q' * pick(rng, LINE_SIZES)}"
                "GET #{target} HTTP/1.1\r\nHost: x\r\n#{close}\r\n"
              when 2 # many small headers
                n = pick(rng, [50, 99, 100, 101, 120, 500, 2000, 10_000])
                "GET / HTTP/1.1\r\nHost: x\r\n#{Array.new(n) { |i| "X-H#{i}: #{i}\r\n" }.join}#{close}\r\n"
              when 3 # a head just under / over the 32 KiB limit, in 1 KiB lines
                n = pick(rng, [28, 30, 31, 32, 33, 40])
                "GET / HTTP/1.1\r\nHost: x\r\n#{Array.new(n) { |i| "X-#{i}: #{'w' * 1000}\r\n" }.join}#{close}\r\n"
              when 4 # a long header name, a long method
                if rng.rand < 0.5
                  "GET / HTTP/1.1\r\nHost: x\r\n#{'N' * pick(rng, LINE_SIZES)}: v\r\n#{close}\r\n"
                else
                  "#{'M' * pick(rng, LINE_SIZES)} / HTTP/1.1\r\nHost: x\r\n#{close}\r\n"
                end
              else # many Cookie / repeated headers the server joins
                n = pick(rng, [10, 100, 400])
                "GET / HTTP/1.1\r\nHost: x\r\n#{Array.new(n) { |i| "Cookie: c#{i}=#{'z' * 60}\r\n" }.join}#{close}\r\n"
              end
  end

  REQUEST_LINES = ["GET / HTTP/1.2", "GET / HTTP/2.0", "GET / HTTP/0.9", "GET / HTTP/1.10", "GET / HTTP/1.", "GET / HTTP/",
                   "GET / http/1.1", "GET / HTTP/1.1 extra", "GET /", "GET", "GET  / HTTP/1.1", "GET / HTTP/1.1\x00",
                   " GET / HTTP/1.1", "\tGET / HTTP/1.1", "get / HTTP/1.1", "G\x00T / HTTP/1.1", "GE(T / HTTP/1.1",
                   "FOO / HTTP/1.1", "CONNECT 127.0.0.1:1 HTTP/1.1", "CONNECT / HTTP/1.1", "OPTIONS * HTTP/1.1",
                   "GET * HTTP/1.1", "GET http://127.0.0.1/ HTTP/1.1", "GET https://x:99999/ HTTP/1.1",
                   "GET example.com HTTP/1.1", "GET /\x7f HTTP/1.1", "GET /a b HTTP/1.1", "GET /%zz%00 HTTP/1.1",
                   "GET /\xff\xfe HTTP/1.1", "GET ../../etc/passwd HTTP/1.1", "GET //// HTTP/1.1", "PRI * HTTP/2.0",
                   "DELETE / HTTP/1.1", "TRACE / HTTP/1.1", "GET /?#frag HTTP/1.1", "GET /echo?\x01 HTTP/1.1",
                   "GET / HTTP/1.1\r", "GET / HTTP/1.1 ", "GET\t/\tHTTP/1.1", "/ HTTP/1.1", "HTTP/1.1",
                   "GET / HTTP/1.1\n", "GET / HTTP/9.9", "GET / HTTP/1.1.1", "GET / FTP/1.1", "GET /\r\n HTTP/1.1",
                   "M-SEARCH * HTTP/1.1", "GET /workers HTTP/1.1\r\nGET / HTTP/1.1"].freeze

  HEADER_LINES = ["Host : x", ": x", "Host x", "Ho\x00st: x", "X: a\x00b", "X: a\rb", "X: a\r\n b", "X: a\r\n\tb",
                  " X: leading-space", "X:\xff\xfe\x80", "X: \xc3\xa9\xe4\xb8\xad", "Host: x\r\nHost: y", "Host: [::1",
                  "Host: x:99999", "Host: x:-1", "Host: x:", "Host: x:abc", "Host: [::1]:80", "Host: ::::",
                  "Host: \xc3\xa9.example", "Host: #{'h' * 300}:1", "Host: x:0", "Host: x:65536", "Host: x y",
                  "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__",
                  "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13",
                  "Expect: 100-continue", "Expect: bogus", "Connection: close, close, keep-alive", "Connection: \x01",
                  "X-Forwarded-Proto: \xff", "X-Forwarded-Proto: https, http", "Content-Type: #{'t' * 5000}",
                  "Transfer-Encoding: chunked", "Transfer-Encoding: identity", "TE: trailers", "Range: bytes=0-0",
                  "X-Forwarded-For: 1.2.3.4, ::1, junk", "Cookie: \x00=\x00", "Authorization: Basic ===",
                  "HOST: X", "host:x", "Host:\tx", "Host: x\r\n\r\n\r\n", "If-None-Match: *"].freeze

  def gen_bad_syntax(rng, c)
    host = rng.rand < 0.85 ? "Host: #{HOST}\r\n" : ""
    close = rng.rand < 0.8 ? "Connection: close\r\n" : ""
    c.bytes = case rng.rand(5)
              when 0, 1
                "#{pick(rng, REQUEST_LINES)}\r\n#{host}#{close}\r\n"
              when 2, 3
                lines = Array.new(rng.rand(1..3)) { pick(rng, HEADER_LINES) }.map { |l| "#{l}\r\n" }.join
                "#{pick(rng, ['GET /', 'POST /echo', 'GET /workers'])} HTTP/1.1\r\n#{host}#{lines}#{close}\r\n"
              else # bare LF or bare CR line endings
                eol = pick(rng, ["\n", "\r", "\n\r"])
                "GET / HTTP/1.1#{eol}Host: x#{eol}Connection: close#{eol}#{eol}"
              end
    c.half_close = rng.rand < 0.3
  end

  # Valid keep-alive requests, then a hostile one, sometimes a valid one after it.
  def gen_pipelined_mix(rng, c)
    reqs = valid_pipeline(rng, count: rng.rand(1..4), close: false)
    reqs = reqs.take_while { |bytes, _, m| !bytes.include?(" HTTP/1.0\r\n") && m != "HEAD" }
    hostile = Case.new
    send(:"gen_#{pick(rng, %i[bitflip substitute content_length chunked junk long_lines bad_syntax])}", rng, hostile)
    after = rng.rand < 0.4 ? "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" : ""
    after = "" if hostile.bytes.include?("HEAD ") # a HEAD answer has no body: keep it last, where that can't mislead
    c.bytes = reqs.map(&:first).join.b + hostile.bytes.b + after
    c.requests = reqs.size + 1 + (after.empty? ? 0 : 1)
    c.prefix = reqs.map { |r| r[1] }
    c.methods = reqs.map(&:last)
    c.half_close = hostile.half_close
  end

  # ---------------------------------------------------------------- the wire

  # Sends the case on a new connection and reads whatever comes back until the server
  # closes, the expected responses are in, or the deadline passes. Returns [bytes, notes].
  def exchange(port, c)
    notes = []
    deadline = now + (c.expected ? VALID_DEADLINE : READ_DEADLINE)
    sock = Socket.tcp(HOST, port, connect_timeout: 2)
    sock.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
    pieces = pieces_of(c)
    out = +"".b
    loop do
      left = deadline - now
      break notes << :deadline if left <= 0

      writing = !pieces.empty?
      readable, writable = IO.select([sock], writing ? [sock] : nil, nil, left)
      break notes << :deadline unless readable || writable

      if readable&.any?
        case (data = sock.read_nonblock(65_536, exception: false))
        when :wait_readable then nil
        when nil then break notes << :eof
        else out << data
        end
      end
      if writable&.any? && !pieces.empty?
        n = sock.write_nonblock(pieces.first, exception: false)
        if n.is_a?(Integer)
          pieces[0] = pieces.first.byteslice(n..)
          if pieces.first.empty?
            pieces.shift
            sleep(0.002) unless pieces.empty? # fragments arrive apart
            sock.close_write if pieces.empty? && c.half_close
          end
        end
      end
      break notes << :answered if pieces.empty? && c.expected && parse(out, c.methods).responses.count { |r| r.complete && !r.status.start_with?("1") } >= c.expected.size
    end
    [out, notes]
  rescue Errno::ECONNRESET, Errno::EPIPE => e
    notes << e.class.name.split("::").last.downcase.to_sym
    [out || "".b, notes]
  ensure
    sock&.close
  end

  def pieces_of(c)
    return [c.bytes.dup] unless c.fragments

    bounds = [0, *c.fragments, c.bytes.bytesize]
    bounds.each_cons(2).map { |a, b| c.bytes.byteslice(a, b - a) }
  end

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # After the HTTP/2 preface and garbage: HTTP/2 frames, the server's SETTINGS first, and
  # a GOAWAY if anything more (the garbage is a connection error).
  def h2_verdict(out)
    return nil if out.empty? # closed before it wrote (the client left first)
    return "not HTTP/2 SETTINGS after the preface: #{out.byteslice(0, 40).inspect}" unless out.bytesize >= 9 && out.getbyte(3) == 4

    types = []
    pos = 0
    while pos + 9 <= out.bytesize
      len = (out.getbyte(pos) << 16) | (out.getbyte(pos + 1) << 8) | out.getbyte(pos + 2)
      types << out.getbyte(pos + 3)
      pos += 9 + len
    end
    return "HTTP/2 frames of unknown types #{types.inspect}" unless (types - [0, 1, 3, 4, 6, 7, 8]).empty?

    nil
  end

  # Splits a byte stream into HTTP/1.x responses. `methods` (when known): the requests'
  # methods in order, so HEAD responses are read without a body. Anything that is not a
  # response where one must start is an error; a response cut short is just incomplete.
  def parse(buf, methods = nil)
    responses = []
    pos = 0
    finals = 0
    while pos < buf.bytesize
      head_end = buf.index("\r\n\r\n", pos)
      unless head_end
        frag = buf.byteslice(pos, 13)
        return Parsed.new(responses, "not an HTTP response: #{buf.byteslice(pos, 80).inspect}") unless status_prefix?(frag)

        responses << Response.new(nil, frag[9, 3], nil, nil, false) if frag.bytesize >= 13
        break
      end
      head = buf.byteslice(pos, head_end - pos)
      m = %r{\AHTTP/1\.([01]) (\d{3}) [^\r\n]*\z}n.match(head.lines.first.to_s.chomp)
      return Parsed.new(responses, "bad status line: #{head.byteslice(0, 80).inspect}") unless m

      header_lines = head.split("\r\n").drop(1)
      bad = header_lines.find { |l| !TOKEN_HEADER.match?(l) }
      return Parsed.new(responses, "bad response header line: #{bad.inspect}") if bad

      version = "1.#{m[1]}"
      status = m[2]
      headers = header_lines.to_h { |l| k, v = l.split(":", 2); [k.downcase, v.strip] }
      pos = head_end + 4
      interim = status.start_with?("1")
      method = methods&.[](finals)
      body_len = if interim || %w[204 304].include?(status) || method == "HEAD" then 0
                 elsif headers["transfer-encoding"]&.include?("chunked") then :chunked
                 elsif headers["content-length"] then Integer(headers["content-length"], 10)
                 else :close
                 end
      finals += 1 unless interim
      case body_len
      when :close
        responses << Response.new(version, status, head, buf.byteslice(pos..), false)
        break
      when :chunked
        body, pos, err = dechunk(buf, pos)
        return Parsed.new(responses, err) if err

        responses << Response.new(version, status, head, body, !pos.nil?)
        break unless pos
      else
        complete = buf.bytesize - pos >= body_len
        responses << Response.new(version, status, head, buf.byteslice(pos, body_len), complete)
        break unless complete

        pos += body_len
      end
    end
    Parsed.new(responses, nil)
  rescue ArgumentError => e
    Parsed.new(responses, "bad response framing: #{e.message}")
  end

  # [body, position after it (nil when incomplete), error]
  def dechunk(buf, pos)
    body = +"".b
    loop do
      eol = buf.index("\r\n", pos) or return [body, nil, nil]
      size = buf.byteslice(pos, eol - pos)
      return [body, nil, "bad chunk size from the server: #{size.inspect}"] unless size.match?(/\A\h+\z/)

      n = size.to_i(16)
      pos = eol + 2
      if n.zero?
        loop do # trailer lines up to a blank line
          line_end = buf.index("\r\n", pos) or return [body, nil, nil]
          return [body, line_end + 2, nil] if line_end == pos

          pos = line_end + 2
        end
      end
      return [body, nil, nil] if buf.bytesize < pos + n + 2

      body << buf.byteslice(pos, n)
      return [body, nil, "chunk not followed by CRLF"] unless buf.byteslice(pos + n, 2) == "\r\n"

      pos += n + 2
    end
  end

  def status_prefix?(frag)
    template = "HTTP/1.? ### "
    frag.each_char.with_index.all? do |ch, i|
      case template[i]
      when "?" then %w[0 1].include?(ch)
      when "#" then ch.match?(/\d/)
      else ch == template[i]
      end
    end
  end

  # What every HTTP/2 client sends first: the server answers it in HTTP/2.
  H2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".b

  # What is wrong with this exchange, if anything (nil when fine).
  def verdict(c, out, notes)
    return h2_verdict(out) if c.bytes.b.start_with?(H2_PREFACE)

    parsed = parse(out, c.methods)
    return parsed.error if parsed.error

    http10 = c.bytes.include?("HTTP/1.0")
    parsed.responses.each do |r|
      next unless r.version # status line only (cut by the deadline)

      return "HTTP/1.0 response to a request without HTTP/1.0: #{r.head.lines.first.inspect}" if r.version == "1.0" && !http10
      return "server error #{r.status}: #{r.head.lines.first.inspect}" if r.status.start_with?("5") && r.status != "503"
    end
    finals = parsed.responses.reject { |r| r.status.start_with?("1") }
    if c.expected
      got = finals.select(&:complete).map { |r| [r.status, r.body] }
      return "valid requests answered #{got.inspect}, expected #{c.expected.inspect} (#{notes.join(',')})" unless got == c.expected
    elsif c.prefix
      finals.take(c.prefix.size).each_with_index do |r, i|
        next unless r.complete

        return "valid request ##{i} before a hostile one answered #{[r.status, r.body].inspect}, expected #{c.prefix[i].inspect}" unless [r.status, r.body] == c.prefix[i]
      end
    end
    nil
  end
end

RSpec.describe "a seeded hostile-input run" do
  before(:all) { @server = ServerProcess.new(["-t", "4", app_path("hostile_input.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  def rss_kib
    File.read("/proc/#{@server.pid}/status")[/VmRSS:\s+(\d+)/, 1].to_i
  end

  def timed_get(path)
    started = HostileInput.now
    res = Net::HTTP.start("127.0.0.1", port, open_timeout: 1, read_timeout: 1) { |h| h.request(Net::HTTP::Get.new(path)) }
    [res, HostileInput.now - started]
  end

  it "answers thousands of malformed, oversized and pipelined requests with HTTP, never a 500, and stays up" do
    seed = Integer(ENV.fetch("FUZZ_SEED", HostileInput::DEFAULT_SEED.to_s))
    count = Integer(ENV.fetch("FUZZ_COUNT", "4000"))
    budget = Float(ENV.fetch("FUZZ_SECONDS", "60"))
    threads = Integer(ENV.fetch("FUZZ_THREADS", "8"))
    only = ENV["FUZZ_CASES"]&.split(",")&.map { |s| Integer(s) }
    puts "\n  FUZZ_SEED=#{seed} (override with FUZZ_SEED=...; replay cases with FUZZ_CASES=i,j)"

    master = Random.new(seed)
    case_seeds = Array.new(count) { master.rand(1 << 62) }
    indices = only || (0...count).to_a

    # Warm up, then the baseline RSS.
    20.times { expect(http_get(port, "/").body).to eq("ok") }
    rss_before = rss_kib

    queue = Queue.new
    indices.each { |i| queue << i }
    queue.close
    lock = Mutex.new
    statuses = Hash.new(0)
    kinds = Hash.new(0)
    outcomes = Hash.new(0)
    failures = []
    sent = 0
    requests = 0
    started = HostileInput.now
    stop_at = started + budget

    workers = Array.new(threads) do
      Thread.new do
        while HostileInput.now < stop_at && (i = queue.pop)
          c = HostileInput.build(i, case_seeds.fetch(i))
          begin
            out, notes = HostileInput.exchange(port, c)
            problem = HostileInput.verdict(c, out, notes)
          rescue Errno::ECONNREFUSED, Errno::ETIMEDOUT, IOError, SystemCallError => e
            out = "".b
            notes = [:connect_failed]
            problem = "could not connect: #{e.class}: #{e.message}"
          end
          parsed = HostileInput.parse(out, c.methods)
          lock.synchronize do
            sent += 1
            requests += c.requests
            kinds[c.kind] += 1
            parsed.responses.each { |r| statuses[r.status] += 1 }
            outcomes[out.empty? ? "no response" : "answered"] += 1
            notes.each { |n| outcomes["ended by #{n}"] += 1 }
            failures << [c, problem, out] if problem
          end
        end
      end
    end
    workers.each(&:join)
    elapsed = HostileInput.now - started

    # Let buffers settle, then the server must be up, quick, whole and not grown.
    sleep 0.5
    alive = !@server.exited?
    res, took = timed_get("/") if alive
    workers_alive = timed_get("/workers").first.body if alive
    rss_after = rss_kib if alive
    log = @server.log

    classes = statuses.group_by { |code, _| "#{code[0]}xx" }.transform_values { |v| v.sum(&:last) }
    puts format("  %d cases (%d requests) in %.1fs over %d threads", sent, requests, elapsed, threads)
    puts "  cases by kind:     #{kinds.sort.map { |k, v| "#{k}=#{v}" }.join(' ')}"
    puts "  responses by class: #{classes.sort.map { |k, v| "#{k}=#{v}" }.join(' ')}"
    puts "  responses by code:  #{statuses.sort.map { |k, v| "#{k}=#{v}" }.join(' ')}"
    puts "  connections:       #{outcomes.sort.map { |k, v| "#{k}=#{v}" }.join(', ')}"
    puts format("  server RSS: %.1f MiB -> %.1f MiB (%+.1f MiB)", rss_before / 1024.0, rss_after.to_i / 1024.0,
                (rss_after.to_i - rss_before) / 1024.0)

    unless failures.empty?
      path = File.join(Dir.tmpdir, "iodine-hostile-input-#{seed}.txt")
      File.open(path, "wb") do |f|
        failures.each do |c, problem, out|
          f.write("case #{c.index} (#{c.kind}, half_close=#{c.half_close}, fragments=#{c.fragments.inspect}): #{problem}\n" \
                  "request bytes: #{c.bytes.inspect}\nresponse bytes: #{out.inspect}\n\n")
        end
      end
      puts "  #{failures.size} failing cases (all bytes in #{path}):"
      failures.first(15).each do |c, problem, _|
        puts "    FUZZ_SEED=#{seed} FUZZ_CASES=#{c.index} (#{c.kind}): #{problem}"
        puts "      request: #{c.bytes.byteslice(0, 300).inspect}#{c.bytes.bytesize > 300 ? "... (#{c.bytes.bytesize} bytes)" : ''}"
      end
    end

    expect(alive).to be(true), "the server exited:\n#{log}"
    expect(failures.map { |c, problem, _| "case #{c.index} (#{c.kind}): #{problem}" }).to eq([])
    expect(sent).to be >= (only ? only.size : HostileInput::MIN_CASES)
    expect(res.code).to eq("200")
    expect(res.body).to eq("ok")
    expect(took).to be < 1.0
    expect(workers_alive).to eq("4")
    expect(rss_after - rss_before).to be < 50 * 1024
    expect(log).not_to match(/panicked|ERROR:|died|worker thread error/)
  end
end
