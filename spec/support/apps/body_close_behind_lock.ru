# frozen_string_literal: true

require "rack"
require "rack/lock"

# Apps behind a lock that is released only by body.close (Rack::Lock, or a Rack 3 style
# lock whose proxy body has `call` and no `each`): a server that skips body.close for some
# response deadlocks the next request. Every inner body counts its close calls in CLOSES,
# shown at GET /closes (not behind any lock).
#   /invalid-status  - status :ok (invalid), Array-like body       behind Rack::Lock
#   /invalid-headers - headers an Array (invalid), Array-like body  behind Rack::Lock
#   /callable        - Rack 3 streaming body (call + close, no each) behind Rack3Lock
CLOSES = Hash.new(0)
CLOSES_LOCK = Mutex.new

# An `each` body that counts closes.
class CountedBody
  def initialize(key, chunks)
    @key = key
    @chunks = chunks
  end

  def each(&block)
    @chunks.each(&block)
  end

  def close
    CLOSES_LOCK.synchronize { CLOSES[@key] += 1 }
  end
end

# A Rack 3 streaming body (call + close, no each) that counts closes.
class CountedCallBody
  def initialize(key)
    @key = key
  end

  def call(stream)
    stream.write("streamed")
    stream.close
  end

  def close
    CLOSES_LOCK.synchronize { CLOSES[@key] += 1 }
  end
end

# Rack 3's BodyProxy in spirit: runs a block once on close, and forwards only `call`
# (so, unlike rack 2.2's Rack::BodyProxy, it has no `each`).
class CallBodyProxy
  def initialize(body, &on_close)
    @body = body
    @on_close = on_close
    @closed = false
  end

  def call(stream)
    @body.call(stream)
  end

  def close
    return if @closed

    @closed = true
    begin
      @body.close if @body.respond_to?(:close)
    ensure
      @on_close.call
    end
  end
end

# Rack 3's Rack::Lock in spirit: the mutex stays locked until the body is closed.
class Rack3Lock
  def initialize(app)
    @app = app
    @mutex = Mutex.new
  end

  def call(env)
    @mutex.lock
    returned = false
    begin
      status, headers, body = @app.call(env)
      returned = [status, headers, CallBodyProxy.new(body) { @mutex.unlock }]
    ensure
      @mutex.unlock unless returned
    end
  end
end

map "/invalid-status" do
  use Rack::Lock
  run ->(_env) { [:ok, { "content-type" => "text/plain" }, CountedBody.new("invalid-status", ["never sent"])] }
end

map "/invalid-headers" do
  use Rack::Lock
  run ->(_env) { [200, [%w[content-type text/plain]], CountedBody.new("invalid-headers", ["never sent"])] }
end

# An upgrade the app accepts with headers that are not a Hash: a 500, and the body closed.
module Ignored; end
map "/upgrade-invalid-headers" do
  use Rack::Lock
  run(lambda do |env|
    env["rack.upgrade"] = Ignored
    [0, [%w[content-type text/plain]], CountedBody.new("upgrade-invalid-headers", ["never sent"])]
  end)
end

# An upgrade the app accepts: the body is closed, nothing of it is sent.
map "/upgrade" do
  use Rack::Lock
  run(lambda do |env|
    env["rack.upgrade"] = Ignored
    [0, {}, CountedBody.new("upgrade", ["never sent"])]
  end)
end

map "/callable" do
  use Rack3Lock
  run ->(_env) { [200, { "content-type" => "text/plain" }, CountedCallBody.new("callable")] }
end

map "/closes" do
  run ->(_env) { [200, { "content-type" => "text/plain" }, [CLOSES_LOCK.synchronize { CLOSES.map { |k, v| "#{k}=#{v}" }.join(",") }]] }
end
