# frozen_string_literal: true

require_relative "realtime_log"

# Server-Sent Events (spec/integration/sse_spec.rb). A stream is named by its `id` query
# parameter; GET /events?id=ID lists what its handler logged: "call <rack.upgrade?>",
# "open <protocol>", "drained", "close", and what the mode below adds.
#   /stream?id=ID&mode=M  an SSE stream when rack.upgrade? is :sse (upgraded with
#                         [200, {set-cookie: s=1, x-app: yes}, []]); otherwise 200 "not sse"
#     mode=hello  writes "hello"
#     mode=forms  writes "a\nb", "c\r\nd\re", ("x", event: "e", id: "7", retry: 3000),
#                 ("y", {event: "e2", id: "8"}), "" and "done", logs "writes <results>",
#                 then closes
#     mode=last   writes "last=<env['HTTP_LAST_EVENT_ID']>", then closes
#     mode=idle   writes nothing
#     mode=sub    subscribes the stream to channel "sse-ID" (no block), logs
#                 "binary <what subscribe(as: :binary) answered>", then writes "subscribed"
#   /publish?ch=C&msg=M   Iodine.publish(C, M)
#   /workers              "alive/pool" worker threads
#   /events?id=ID         the log

# One event stream.
class Stream
  def initialize(id, mode)
    @id = id
    @mode = mode
  end

  def on_open(client)
    RealtimeLog.add(@id, "open #{client.protocol.inspect}")
    send(:"open_#{@mode}", client)
  end

  def on_drained(_client) = RealtimeLog.add(@id, "drained")
  def on_close(_client) = RealtimeLog.add(@id, "close")

  private

  def open_hello(client) = client.write("hello")
  def open_idle(_client) = nil

  def open_forms(client)
    results = [client.write("a\nb"), client.write("c\r\nd\re"), client.write("x", event: "e", id: "7", retry: 3000),
               client.write("y", { event: "e2", id: "8" }), client.write(""), client.write("done")]
    RealtimeLog.add(@id, "writes #{results.inspect}")
    client.close
  end

  def open_last(client)
    client.write("last=#{client.env['HTTP_LAST_EVENT_ID']}")
    client.close
  end

  def open_sub(client)
    client.subscribe("sse-#{@id}")
    RealtimeLog.add(@id, "binary #{client.subscribe("sse-bin-#{@id}", as: :binary).inspect}")
    client.write("subscribed")
  end
end

app = lambda do |env|
  params = RealtimeLog.params(env)
  case env["PATH_INFO"]
  when "/events" then RealtimeLog.response(env)
  when "/workers" then RealtimeLog.workers
  when "/publish" then [200, { "content-type" => "text/plain" }, [Iodine.publish(params["ch"], params["msg"]).inspect]]
  when "/stream"
    RealtimeLog.add(params["id"], "call #{env['rack.upgrade?'].inspect}")
    return [200, { "content-type" => "text/plain" }, ["not sse"]] unless env["rack.upgrade?"] == :sse

    env["rack.upgrade"] = Stream.new(params["id"], params.fetch("mode", "hello"))
    [200, { "set-cookie" => "s=1", "x-app" => "yes" }, []]
  else [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end

run app
