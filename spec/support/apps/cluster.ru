# frozen_string_literal: true

require "uri"

# The app of spec/integration/cluster_spec.rb, run with `exe/iodine -w 2` (cluster mode).
# Every answer names the process that gave it, so the spec can tell the workers apart.
#
# HTTP:
#   /pid                          "PID" of the worker that answered
#   /whoami                       "PID master=BOOL worker=BOOL"
#   /pub?ch=C&msg=M[&engine=E][&hex=1]
#                                 Iodine.publish(C, M, ENGINE) with E one of cluster, process,
#                                 siblings, root (PUBLISH2ROOT); without E Iodine.publish(C, M).
#                                 hex=1: M is hex, published as those bytes. Answers "PID".
#   /stop                         Iodine.stop in this worker; answers "PID"
#   anything else                 "ok PID"
# WebSocket (any path): query ?sub=C (repeatable), ?pat=P (match: :redis, repeatable),
#   ?bin=C (as: :binary, repeatable): Connection#subscribe without a block in on_open, then
#   the message "pid:PID". Messages from the client: "pubn C PREFIX N" publishes PREFIX0 ...
#   PREFIX(N-1) to C from this worker (answers nothing). on_shutdown writes "bye:PID".
#
# With CLUSTER_EVENTS=FILE every process appends "PID LINE" lines to FILE:
#   every on_state event: "EVENT master=BOOL worker=BOOL"
#   the channel "engines" (subscribed with Iodine.subscribe before start, so in every process,
#     the master included): "got MSG"
#   the channel "relay" (Iodine.subscribe in :pre_start; its block acts in the master only):
#     "master got MSG"; a message "TAG ENGINE" makes the master publish TAG to "engines"
#     with that engine.
#   WebSocket on_shutdown: "on_shutdown"
#
# With CLUSTER_RAW=PORT a raw TCP listener on 127.0.0.1:PORT too: each connection is greeted
# with "pid:PID\n". With CLUSTER_UNIX=PATH the app is served on the Unix socket PATH too.
module ClusterApp
  EVENTS = ENV.fetch("CLUSTER_EVENTS", nil)
  ENGINES = {
    "cluster" => Iodine::PubSub::CLUSTER,
    "process" => Iodine::PubSub::PROCESS,
    "siblings" => Iodine::PubSub::SIBLINGS,
    "root" => Iodine::PubSub::PUBLISH2ROOT
  }.freeze

  module_function

  # One short write with O_APPEND: lines of different processes never interleave.
  def note(line)
    File.write(EVENTS, "#{Process.pid} #{line}\n", mode: "a") if EVENTS
  end

  def params(env)
    URI.decode_www_form(env["QUERY_STRING"].to_s).each_with_object(Hash.new { |h, k| h[k] = [] }) do |(k, v), h|
      h[k] << v
    end
  end

  def text(body)
    [200, { "content-type" => "text/plain" }, [body]]
  end

  def publish(params)
    channel = params["ch"].first
    message = params["msg"].first.to_s
    message = [message].pack("H*") if params["hex"].first == "1"
    engine = ENGINES[params["engine"].first]
    engine ? Iodine.publish(channel, message, engine) : Iodine.publish(channel, message)
  end
end

# A raw connection (CLUSTER_RAW): told which worker it landed on.
class ClusterRawGreeter
  def on_open(client)
    client.write("pid:#{Process.pid}\n")
  end
end

# A WebSocket client subscribed (no block) to what its query asked for.
class ClusterClient
  def initialize(params)
    @params = params
  end

  def on_open(client)
    @params["sub"].each { |channel| client.subscribe(channel) }
    @params["pat"].each { |pattern| client.subscribe(pattern, match: :redis) }
    @params["bin"].each { |channel| client.subscribe(channel, as: :binary) }
    client.write("pid:#{Process.pid}")
  end

  def on_message(_client, data)
    command, channel, prefix, count = data.split(" ")
    return unless command == "pubn"

    count.to_i.times { |i| Iodine.publish(channel, "#{prefix}#{i}") }
  end

  def on_shutdown(client)
    ClusterApp.note("on_shutdown")
    client.write("bye:#{Process.pid}")
  end
end

%i[pre_start before_fork after_fork enter_child enter_master on_start on_parent_crush on_child_crush
   start_shutdown on_finish].each do |event|
  Iodine.on_state(event) { ClusterApp.note("#{event} master=#{Iodine.master?} worker=#{Iodine.worker?}") }
end

Iodine.subscribe("engines") { |_channel, message| ClusterApp.note("got #{message}") }

# Made in the master before the forks, so the workers inherit it too (fork semantics): the
# block acts only in the master.
Iodine.on_state(:pre_start) do
  master = Process.pid
  Iodine.subscribe("relay") do |_channel, message|
    next unless Process.pid == master

    ClusterApp.note("master got #{message}")
    tag, engine = message.split(" ")
    Iodine.publish("engines", tag, ClusterApp::ENGINES.fetch(engine)) if engine
  end
end

app = lambda do |env|
  params = ClusterApp.params(env)
  if env["rack.upgrade?"] == :websocket
    env["rack.upgrade"] = ClusterClient.new(params)
    next [0, {}, []]
  end

  case env["PATH_INFO"]
  when "/pid" then ClusterApp.text(Process.pid.to_s)
  when "/whoami" then ClusterApp.text("#{Process.pid} master=#{Iodine.master?} worker=#{Iodine.worker?}")
  when "/pub"
    ClusterApp.publish(params)
    ClusterApp.text(Process.pid.to_s)
  when "/stop"
    Iodine.stop
    ClusterApp.text(Process.pid.to_s)
  else ClusterApp.text("ok #{Process.pid}")
  end
end

if (raw_port = ENV.fetch("CLUSTER_RAW", nil))
  Iodine.listen(service: :raw, address: "127.0.0.1", port: raw_port) { ClusterRawGreeter.new }
end
Iodine.listen(service: :http, address: ENV.fetch("CLUSTER_UNIX"), handler: app) if ENV["CLUSTER_UNIX"]

run app
