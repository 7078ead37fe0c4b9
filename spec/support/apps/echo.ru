# frozen_string_literal: true

require "json"

# Echoes what the server told the app, for the integration specs.
CLOSED = Hash.new(0)

# A body that streams its chunks and counts `close` calls.
class Streamed
  def initialize(chunks, delay, key)
    @chunks = chunks
    @delay = delay
    @key = key
  end

  def each
    @chunks.each do |c|
      yield c
      sleep @delay
    end
  end

  def close
    CLOSED[@key] += 1
  end
end

# A body with `to_path`.
class FileBody
  def initialize(path)
    @path = path
  end

  def to_path
    @path
  end

  def each
    raise "each must not be called when to_path is served"
  end

  def close
    CLOSED["file"] += 1
  end
end

app = lambda do |env|
  req_path = env["PATH_INFO"]
  case req_path
  when %r{\A/env}
    input = env["rack.input"]
    body = input.read
    input.rewind
    dump = env.select { |_, v| v.is_a?(String) }
    dump["body"] = body
    dump["body_again"] = input.read
    dump["input_class"] = input.class.name
    dump["rack.version"] = env["rack.version"]
    dump["rack.multithread"] = env["rack.multithread"]
    dump["rack.hijack?"] = env["rack.hijack?"]
    [200, { "Content-Type" => "application/json" }, [JSON.generate(dump)]]
  when "/echo"
    body = env["rack.input"].read
    [200, { "Content-Type" => "application/octet-stream" }, [body]]
  when "/status"
    [Integer(env["QUERY_STRING"]), { "Content-Type" => "text/plain" }, ["status"]]
  when "/multi-header"
    [200, { "Set-Cookie" => "a=1\nb=2", "X-List" => %w[x y], "X-Nil" => nil }, ["ok"]]
  when "/stream"
    [200, { "Content-Type" => "text/plain" }, Streamed.new(%w[one two three], 0.2, "stream")]
  when "/file"
    [200, { "Content-Type" => "text/plain" }, FileBody.new(__FILE__)]
  when "/closed"
    [200, { "Content-Type" => "text/plain" }, [JSON.generate(CLOSED)]]
  when "/raise"
    raise ArgumentError, "boom from the app"
  when "/raise-in-each"
    body = Object.new
    def body.each
      yield "partial"
      raise "boom in each"
    end
    [200, {}, body]
  when "/bad-response"
    "not a rack response"
  when "/slow"
    sleep Float(env["QUERY_STRING"].empty? ? "1" : env["QUERY_STRING"])
    [200, { "Content-Type" => "text/plain" }, ["slow done"]]
  when "/close"
    [200, { "Connection" => "close" }, ["bye"]]
  when "/big"
    [200, { "Content-Type" => "text/plain" }, ["x" * 1_000_000]]
  when "/hijack"
    io = env["rack.hijack"].call
    raise "rack.hijack_io differs" unless env["rack.hijack_io"].equal?(io)

    io.write("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
    io.close
    [200, {}, ["ignored"]]
  when "/hijack-later"
    io = env["rack.hijack"].call
    Thread.new do
      sleep 0.3
      io.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlater")
      io.close
    end
    [200, {}, []]
  when "/rack3-stream"
    body = lambda do |stream|
      stream.write("first;")
      Thread.new do
        sleep 0.2
        stream << "second;"
        stream.write("third")
        stream.close
      end
    end
    [200, { "content-type" => "text/plain" }, body]
  when "/stop"
    Iodine.stop
    [200, {}, ["stopping"]]
  else
    [200, { "Content-Type" => "text/plain" }, ["Hello World!"]]
  end
end

run app
