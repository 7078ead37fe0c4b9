# frozen_string_literal: true

# One path per moment a client can leave at (spec/integration/client_leaves_spec.rb). Bodies
# that can be closed count their `close` calls per kind, shown at GET /closes?kind=KIND.
# Nothing here writes to stdout/stderr: the spec asserts the server logs nothing when a client
# leaves.
#   /               - "ok"
#   /workers        - Iodine::Base.workers_alive
#   /closes?kind=K  - how many times a body of kind K was closed
#   /upload         - reads rack.input, answers its size
#   /sleep          - sleeps 0.5 s, then answers
#   /array          - a 5 MB Array body (an Array subclass with `close`)       kind "array"
#   /trickle        - `each` body: 40 chunks of 1000 bytes, sleep 0.05 apart   kind "trickle"
#   /callable       - Rack 3 callable body (call + close, no each), same pace   kind "callable"
#   /file           - `to_path` body: the file named by $CLIENT_LEAVES_FILE    kind "file"
#   /hijack         - full hijack, writes a chunk every 0.1 s for 2 s (errors rescued)
#   /backpressure   - `each` body: up to 2000 chunks of 64 KB, as fast as sent kind "backpressure"
CLOSES = Hash.new(0)
CLOSES_LOCK = Mutex.new

# Close counting, shared by the bodies below.
module CloseCount
  def self.add(kind)
    CLOSES_LOCK.synchronize { CLOSES[kind] += 1 }
  end
end

# An Array body that also has `close` (Rack: "if the body responds to close, it will be
# called after iteration").
class ClosableArray < Array
  def close
    CloseCount.add("array")
  end
end

# A streamed `each` body that counts its closes.
class CountedEach
  def initialize(kind, count, chunk, delay)
    @kind = kind
    @count = count
    @chunk = chunk
    @delay = delay
  end

  def each
    @count.times do
      yield @chunk
      sleep @delay if @delay
    end
  end

  def close
    CloseCount.add(@kind)
  end
end

# A Rack 3 streaming body: responds to `call` (and `close`) only, not `each`.
class CountedCall
  def initialize(count, chunk, delay)
    @count = count
    @chunk = chunk
    @delay = delay
  end

  def call(stream)
    @count.times do
      stream.write(@chunk)
      sleep @delay
    end
  ensure
    stream.close
  end

  def close
    CloseCount.add("callable")
  end
end

# A `to_path` body (with an `each` fallback, as Rack requires).
class CountedFile
  def initialize(path)
    @path = path
  end

  def to_path
    @path
  end

  def each
    File.open(@path, "rb") do |f|
      while (chunk = f.read(65_536))
        yield chunk
      end
    end
  end

  def close
    CloseCount.add("file")
  end
end

TRICKLE_CHUNK = ("t" * 1000).freeze
BIG_CHUNK = ("b" * 65_536).freeze
MEGABYTE = ("a" * 1_000_000).freeze

app = lambda do |env|
  case env["PATH_INFO"]
  when "/workers"
    alive = if Iodine::Base.respond_to?(:workers_alive)
              Iodine::Base.workers_alive
            else # older builds: count the pool's threads by name
              Thread.list.count { |t| t.alive? && t.name.to_s.start_with?("iodine-worker") }
            end
    [200, { "content-type" => "text/plain" }, [alive.to_s]]
  when "/closes"
    kind = env["QUERY_STRING"].sub(/\Akind=/, "")
    [200, { "content-type" => "text/plain" }, [CLOSES_LOCK.synchronize { CLOSES[kind] }.to_s]]
  when "/upload"
    size = env["rack.input"].read.bytesize
    [200, { "content-type" => "text/plain" }, [size.to_s]]
  when "/sleep"
    sleep 0.5
    [200, { "content-type" => "text/plain" }, ["slept"]]
  when "/array"
    [200, { "content-type" => "text/plain" }, ClosableArray.new(5) { MEGABYTE }]
  when "/trickle"
    [200, { "content-type" => "text/plain" }, CountedEach.new("trickle", 40, TRICKLE_CHUNK, 0.05)]
  when "/callable"
    [200, { "content-type" => "text/plain" }, CountedCall.new(40, TRICKLE_CHUNK, 0.05)]
  when "/file"
    [200, { "content-type" => "application/octet-stream" }, CountedFile.new(ENV.fetch("CLIENT_LEAVES_FILE"))]
  when "/hijack"
    begin
      io = env["rack.hijack"].call
      io.write("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n")
      20.times do
        io.write(TRICKLE_CHUNK)
        sleep 0.1
      end
    rescue StandardError
      nil # the client left: nothing to do
    ensure
      io&.close rescue nil
    end
    [200, {}, []]
  when "/backpressure"
    [200, { "content-type" => "application/octet-stream" }, CountedEach.new("backpressure", 2000, BIG_CHUNK, nil)]
  else
    [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end

run app
