# frozen_string_literal: true

require "json"
require "uri"

# The app of spec/integration/redis_spec.rb and redis_faults_spec.rb, run with
# `exe/iodine -r URL` (the Redis engine made the default). With REDIS_APP_URL=URL (and
# REDIS_APP_PING=N) it makes its own engine instead, `Iodine::PubSub::Redis.new(URL, ping: N)`
# before the start, and leaves the default alone. Query values are %XX-encoded bytes.
#
# HTTP:
#   /pid                       "PID" of the process that answered
#   /publish?ch=C&msg=M[&via=V][&count=N]
#                              publishes M (N times: M0, M1, …); V: default → Iodine.publish(C, M),
#                              engine → Iodine.publish(C, M, redis), method → redis.publish(C, M),
#                              cluster → Iodine.publish(C, M, CLUSTER). Answers "PID".
#   /cluster?ch=C&msg=M        the same as via=cluster
#   /subscribe?ch=C            Iodine.subscribe(C) in this process; its block keeps the messages
#   /unsubscribe?ch=C          Iodine.unsubscribe(C).inspect
#   /received?ch=C             JSON: what that block got, in order
#   /cmd?args=JSON[&wait=S][&id=ID]
#                              redis.cmd(*args) { |reply| … } in this worker, then waits S seconds
#                              (default 5) for the block. JSON args: strings, numbers, null,
#                              true, false; {"sym": S} a Symbol, {"hex": H} binary bytes,
#                              {"array": A}, {"hash": H}, {"object": NAME} an Object. With ID, logs
#                              "cmd issued ID" to stderr once cmd returned. Answers JSON: pid,
#                              block_pid, returned_engine, reply (typed, see RedisApp.typed),
#                              timeout (no reply in time), raised/message (cmd raised).
#   /stats                     JSON: redis.stats and pid
#   /engine                    JSON: the engine's class, whether it is an Engine and the default
#   anything else              "ok"
# WebSocket /ws?ch=C[&pattern=1][&binary=1] and SSE /sse?ch=C[&pattern=1]: in on_open the
#   connection subscribes to C (pattern=1: match: :redis; binary=1: as: :binary), then writes
#   "ready:PID".
module RedisApp
  OWN_ENGINE = if ENV["REDIS_APP_URL"]
                 Iodine::PubSub::Redis.new(ENV["REDIS_APP_URL"], ping: ENV.fetch("REDIS_APP_PING", "0").to_i)
               end
  # With REDIS_APP_GOODBYE=CHANNEL each worker publishes "bye:PID" there as it shuts down.
  if (goodbyes = ENV["REDIS_APP_GOODBYE"])
    Iodine.on_state(:start_shutdown) { Iodine.publish(goodbyes, "bye:#{Process.pid}") }
  end
  RECEIVED = Hash.new { |hash, channel| hash[channel] = [] }
  LOCK = Mutex.new

  module_function

  def engine = OWN_ENGINE || Iodine::PubSub.default

  def params(env)
    URI.decode_www_form(env["QUERY_STRING"].to_s, Encoding::BINARY).to_h
  end

  def text(body) = [200, { "content-type" => "text/plain" }, [body.to_s]]
  def json(data) = [200, { "content-type" => "application/json" }, [JSON.generate(data)]]

  def publish(params, via)
    count = params["count"]&.to_i
    messages = count ? Array.new(count) { |i| "#{params['msg']}#{i}".b } : [params["msg"].to_s]
    messages.each do |message|
      case via
      when "engine" then Iodine.publish(params["ch"], message, engine)
      when "method" then engine.publish(params["ch"], message)
      when "cluster" then Iodine.publish(params["ch"], message, Iodine::PubSub::CLUSTER)
      else Iodine.publish(params["ch"], message)
      end
    end
    text(Process.pid)
  end

  def subscribe(channel)
    Iodine.subscribe(channel) { |ch, message| LOCK.synchronize { RECEIVED[ch] << message } }
    text(Process.pid)
  end

  def received(channel)
    json(LOCK.synchronize { RECEIVED[channel.b].map { |m| m.dup.force_encoding(Encoding::UTF_8).scrub } })
  end

  # The reply as JSON-safe data: {type:, …} (Strings as hex, with their encoding).
  def typed(reply)
    case reply
    when String then { type: "String", hex: reply.unpack1("H*"), encoding: reply.encoding.name }
    when Integer then { type: "Integer", value: reply }
    when Float then { type: "Float", value: reply }
    when true, false then { type: "Boolean", value: reply }
    when nil then { type: "nil" }
    when Array then { type: "Array", items: reply.map { |item| typed(item) } }
    when Exception
      { type: reply.class.name, message: reply.message.dup.force_encoding(Encoding::UTF_8).scrub,
        standard_error: reply.is_a?(StandardError) }
    else { type: reply.class.name, message: reply.inspect }
    end
  end

  def argument(arg)
    return arg unless arg.is_a?(Hash)
    return arg["sym"].to_sym if arg.key?("sym")
    return [arg["hex"]].pack("H*") if arg.key?("hex")
    return arg["array"] if arg.key?("array")
    return arg["hash"] if arg.key?("hash")

    Object.new
  end

  def cmd(params)
    args = JSON.parse(params.fetch("args", "[]").dup.force_encoding(Encoding::UTF_8)).map { |arg| argument(arg) }
    replies = Queue.new
    begin
      returned = engine.cmd(*args) { |reply| replies << [reply, Process.pid] }
    rescue StandardError => e
      return json(pid: Process.pid, raised: e.class.name, message: e.message)
    end
    warn("cmd issued #{params['id']}") unless params["id"].to_s.empty?
    reply, block_pid = pop(replies, params.fetch("wait", "5").to_f)
    json(pid: Process.pid, returned_engine: returned.equal?(engine), timeout: block_pid.nil?,
         block_pid: block_pid, reply: block_pid && typed(reply))
  end

  # The next item of `queue`, or nil after `seconds` (Ruby 3.1's Queue#pop has no timeout).
  def pop(queue, seconds)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
    while queue.empty?
      return nil if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.01
    end
    queue.pop
  end

  def stats
    values = engine.stats.to_h do |key, value|
      [key.to_s, [true, false, nil].include?(value) || value.is_a?(Numeric) ? value : value.to_s]
    end
    json(values.merge("pid" => Process.pid))
  end

  def engine_info
    json(class: engine.class.name, engine: engine.is_a?(Iodine::PubSub::Engine),
         default: Iodine::PubSub.default.equal?(engine), default_class: Iodine::PubSub.default.class.name)
  end
end

# A WebSocket or SSE connection subscribed to one channel (or pattern) in on_open.
class RedisAppSubscriber
  def initialize(params)
    @channel = params["ch"]
    @options = {}
    @options[:match] = :redis if params["pattern"] == "1"
    @options[:as] = :binary if params["binary"] == "1"
  end

  def on_open(client)
    client.subscribe(@channel, **@options)
    client.write("ready:#{Process.pid}")
  end
end

run(lambda do |env|
  params = RedisApp.params(env)
  path = env["PATH_INFO"]
  if (path == "/ws" && env["rack.upgrade?"] == :websocket) || (path == "/sse" && env["rack.upgrade?"] == :sse)
    env["rack.upgrade"] = RedisAppSubscriber.new(params)
    next [env["rack.upgrade?"] == :sse ? 200 : 0, {}, []]
  end

  case path
  when "/pid" then RedisApp.text(Process.pid)
  when "/publish" then RedisApp.publish(params, params["via"])
  when "/cluster" then RedisApp.publish(params, "cluster")
  when "/subscribe" then RedisApp.subscribe(params["ch"])
  when "/unsubscribe" then RedisApp.text(Iodine.unsubscribe(params["ch"]).inspect)
  when "/received" then RedisApp.received(params["ch"])
  when "/cmd" then RedisApp.cmd(params)
  when "/stats" then RedisApp.stats
  # A cmd block that raises, throws, or kills its worker thread; then: how many are alive.
  when "/cmd-block"
    how = params["do"]
    RedisApp.engine.cmd("PING") do |_reply|
      case how
      when "raise" then raise "boom from a cmd block"
      when "throw" then throw :nowhere
      when "kill" then Thread.current.kill
      end
    end
    RedisApp.text("sent")
  when "/threads"
    RedisApp.text(Thread.list.count { |t| t.name.to_s.start_with?("iodine-worker") && t.alive? })
  when "/engine" then RedisApp.engine_info
  else RedisApp.text("ok")
  end
end)
