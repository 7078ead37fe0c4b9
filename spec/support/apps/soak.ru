# frozen_string_literal: true

# For bench/soak.rb: GET / answers "hello", /64k 64 KiB, POST /upload the size of the body
# it read, /stream?CHUNKS,SIZE,PAUSE an `each` body of CHUNKS chunks of SIZE bytes with PAUSE
# seconds between them (defaults 16, 4096, 0.002), /workers Iodine::Base.workers_alive.
SIXTY_FOUR_K = ("0123456789abcdef" * 4096).freeze

# Streams `count` chunks of `size` bytes ("a".."z" by chunk), pausing between them. The chunks
# are made once per size, so the app itself makes next to no garbage and the server's own
# memory use is what the soak sees.
class SoakStream
  CHUNKS = {}
  LOCK = Mutex.new

  def self.chunks(size)
    LOCK.synchronize { CHUNKS[size] ||= ("a".."z").map { |c| (c * size).freeze }.freeze }
  end

  def initialize(count, size, pause)
    @count = count
    @chunks = SoakStream.chunks(size)
    @pause = pause
  end

  def each
    @count.times do |i|
      yield @chunks[i % 26]
      sleep @pause if @pause.positive?
    end
  end
end

app = lambda do |env|
  case env["PATH_INFO"]
  when "/"
    [200, { "content-type" => "text/plain" }, ["hello"]]
  when "/64k"
    [200, { "content-type" => "application/octet-stream" }, [SIXTY_FOUR_K]]
  when "/upload"
    input = env["rack.input"]
    size = 0
    buf = +""
    size += buf.bytesize while input&.read(65_536, buf)
    [200, { "content-type" => "text/plain" }, [size.to_s]]
  when "/stream"
    count, size, pause = env["QUERY_STRING"].split(",")
    body = SoakStream.new(Integer(count || 16), Integer(size || 4096), Float(pause || 0.002))
    [200, { "content-type" => "application/octet-stream" }, body]
  when "/workers"
    [200, { "content-type" => "text/plain" }, [Iodine::Base.workers_alive.to_s]]
  else
    [404, { "content-type" => "text/plain" }, ["not found"]]
  end
end

run app
