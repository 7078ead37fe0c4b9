# frozen_string_literal: true

require "timeout"

# Rack 3 streaming bodies (they answer `call(stream)` only) whose writes to a client that
# does not read get interrupted:
#   GET /timeout  - Timeout.timeout(1) around a loop of big stream.write calls
#   GET /kill     - a writer thread, blocked in stream.write, is killed with Thread#kill
# and an `each` body interrupted the same way:
#   GET /each-timeout - Timeout.timeout(1) around yielding big chunks (the Timeout::Error
#                       leaves `each`)
# GET /outcome tells what the last interrupted body saw; anything else answers "ok".
OUTCOME = []

# A body with only `call`, like a Rack 3 streaming body.
class CallBody
  def initialize(&block)
    @block = block
  end

  def call(stream)
    @block.call(stream)
  end
end

CHUNK = ("x" * 65_536).freeze

# An `each` body whose iteration is cut by Timeout while the server waits for the client.
class TimedEach
  def each(&block)
    Timeout.timeout(1) { 400.times { block.call(CHUNK) } }
    OUTCOME << "each finished"
  rescue Timeout::Error
    OUTCOME << "each timeout"
    raise
  end

  def close
    OUTCOME << "each closed"
  end
end

app = lambda do |env|
  case env["PATH_INFO"]
  when "/timeout"
    body = CallBody.new do |stream|
      begin
        Timeout.timeout(1) { 400.times { stream.write(CHUNK) } }
        OUTCOME << "finished"
      rescue Timeout::Error
        OUTCOME << "timeout"
      rescue IOError => e
        OUTCOME << "ioerror: #{e.message}"
      end
      stream.close rescue nil
    end
    [200, { "content-type" => "text/plain" }, body]
  when "/kill"
    body = CallBody.new do |stream|
      writer = Thread.new { loop { stream.write(CHUNK) } }
      writer.report_on_exception = false
      sleep 1
      writer.kill
      writer.join(5)
      OUTCOME << (writer.alive? ? "writer still alive" : "killed")
      stream.close rescue nil
    end
    [200, { "content-type" => "text/plain" }, body]
  when "/each-timeout"
    [200, { "content-type" => "text/plain" }, TimedEach.new]
  when "/outcome"
    [200, { "content-type" => "text/plain" }, [OUTCOME.join(",")]]
  else
    [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end

run app
