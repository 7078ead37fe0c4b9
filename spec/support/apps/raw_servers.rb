# frozen_string_literal: true

# Raw (non-HTTP) iodine listeners for spec/integration/raw_connections_spec.rb, one per way of
# asking for one (api.md §2.1-2.3, §3). Run as
#
#   ruby -Ilib raw_servers.rb HTTP ECHO ECHO_URL NILS PROBE LATE UNIX_DIR
#
# HTTP   (service: :http) the control listener:
#          GET /events?id=ID   what the connection named ID went through, one line per event
#          GET /conns?kind=K   JSON: every connection of kind K (echo, unix, late, upgraded) so far,
#                              in the order they opened, each {"events" => [...], "bytes" =>
#                              received, "max_chunk" => biggest on_message, "encodings" => [...]}
#          GET /factory        JSON: how often the nil-returning factory was called
#          GET /upgrade-tcp?id=ID    env["upgrade.tcp"] = a probe named ID, answers 101 + x-upgraded: tcp
#          GET /upgrade-echo   env["upgrade.tcp"] = an Echo (recorded as kind "upgraded"), answers 101
#          GET /rack-upgrade?id=ID   env["rack.upgrade"] = a probe named ID on a plain
#                              request, answers 200 + x-upgraded: rack and a body (never sent)
# ECHO   (no service:, address + port, block form) echoes every byte back.
# ECHO_URL (url: "tcp://127.0.0.1:ECHO_URL") the same echo, recorded as kind "echo" too.
# NILS   (service: :tcp) the factory answers nil, false, true in turn: every connection closed.
# PROBE  (url: "raw://127.0.0.1:PROBE") a Probe: the client names it with a first line
#        "id NAME\n"; then lines are commands (see Probe#command); anything else is echoed.
# LATE   (service: :raw) Late handlers: on_open adds on_message and on_drained methods too late.
# UNIX_DIR/echo.sock (address: path, port: 0) and UNIX_DIR/url.sock (url: "unix://:0/…"):
#        echo, recorded as kind "unix".
#
# Each event also goes to stderr as "event NAME: LINE" (for the shutdown spec, when the
# server can no longer answer).

require "iodine"
require "json"
require "rack"

http_port, echo_port, echo_url_port, nils_port, probe_port, late_port = ARGV.first(6).map { |a| Integer(a) }
unix_dir = ARGV.fetch(6)

# Events per named connection and per listener.
module Log
  LOCK = Mutex.new
  NAMED = Hash.new { |h, k| h[k] = [] }
  KINDS = Hash.new { |h, k| h[k] = [] }

  module_function

  def add(name, line)
    LOCK.synchronize { NAMED[name] << line }
    $stderr.puts("event #{name}: #{line}")
  end

  def lines(name)
    LOCK.synchronize { NAMED.fetch(name, []).dup }
  end

  def register(kind, record)
    LOCK.synchronize { KINDS[kind] << record }
  end

  def records(kind)
    LOCK.synchronize { KINDS[kind].map { |r| r.transform_values { |v| v.is_a?(Array) ? v.dup : v } } }
  end

  def synchronize(&block)
    LOCK.synchronize(&block)
  end
end

# Echoes, recording the callbacks, the bytes and the biggest chunk.
class Echo
  def initialize(kind)
    @record = { "events" => [], "bytes" => 0, "max_chunk" => 0, "encodings" => [] }
    Log.register(kind, @record)
  end

  def note(line)
    Log.synchronize { @record["events"] << line }
  end

  def on_open(client)
    note("open #{client.protocol.inspect} env=#{client.env.inspect}")
  end

  def on_drained(_client)
    note("drained")
  end

  def on_message(client, data)
    Log.synchronize do
      @record["bytes"] += data.bytesize
      @record["max_chunk"] = data.bytesize if data.bytesize > @record["max_chunk"]
      @record["encodings"] |= [data.encoding.to_s]
      @record["events"] << "message" unless @record["events"].last == "message"
    end
    client.write(data)
  end

  def on_shutdown(_client)
    note("shutdown")
  end

  def on_close(_client)
    note("close")
  end
end

# A named, line-driven connection. Before its "id NAME" line its events wait in @pending.
class Probe
  def initialize(name = nil)
    @name = name
    @pending = []
    @buffer = +""
  end

  def log(line)
    return Log.add(@name, line) if @name

    @pending << line
  end

  def on_open(client)
    env = client.env.nil? ? "nil" : client.env.class
    log("open #{client.protocol.inspect} env=#{env} handler=#{client.handler.equal?(self)}")
  end

  def on_drained(_client)
    log("drained")
  end

  def ping(client)
    log("ping")
    client.write("ping\n")
  end

  def on_shutdown(client)
    log("shutdown")
    client.write("shutting down\n")
  end

  def on_close(client)
    log("close open?=#{client.open?}")
  end

  def on_message(client, data)
    log("message #{data.encoding} #{data.bytesize}#{" first=#{data.inspect}" if @first.nil?}")
    @first = false
    @buffer << data
    while (line = @buffer.slice!(/\A[^\n]*\n/))
      command(client, line.chomp)
    end
  end

  # The commands: id NAME | timeout N (answers "timeout=N\n") | slow (sleeps 0.3 s, answers
  # "slow done\n") | close (answers "bye\n", then client.close) | swap (client.handler =
  # a Swapped, answers "swapped <handler= returned it>\n") | same (client.handler = self,
  # answers "same <handler= returned it>\n") | drop (client.handler = nil) | anything else:
  # echoed with "echo:".
  def command(client, line)
    case line
    when /\Aid (\S+)\z/
      @name = Regexp.last_match(1)
      @pending.each { |l| Log.add(@name, l) }
      @pending.clear
      client.write("named #{@name}\n")
    when /\Atimeout (\d+)\z/
      client.timeout = Integer(Regexp.last_match(1))
      client.write("timeout=#{client.timeout}\n")
    when "slow"
      sleep 0.3
      client.write("slow done\n")
    when "close"
      client.write("bye\n")
      client.close
    when "same"
      answer = (client.handler = self)
      client.write("same #{answer.equal?(self)}\n")
    when "drop"
      client.handler = nil
    when "swap"
      swapped = Swapped.new(@name)
      answer = (client.handler = swapped)
      client.write("swapped #{answer.equal?(swapped)} handler=#{client.handler.class}\n")
    else
      client.write("echo:#{line}\n")
    end
  end
end

# What a Probe swaps to: its callbacks come from method_missing (respond_to_missing? says so).
class Swapped
  CALLBACKS = %i[on_open on_message on_close].freeze

  def initialize(name)
    @name = name
  end

  def respond_to_missing?(name, include_private = false)
    CALLBACKS.include?(name) || super
  end

  def method_missing(name, *args)
    return super unless CALLBACKS.include?(name)

    client = args.first
    case name
    when :on_open then Log.add(@name, "swapped open handler=#{client.handler.class}")
    when :on_message
      Log.add(@name, "swapped message #{args[1].inspect}")
      client.write("swapped:#{args[1]}")
    when :on_close then Log.add(@name, "swapped close")
    end
  end
end

# Has only on_open and on_close when attached; on_open adds on_message and on_drained,
# which iodine must not see (callbacks are detected when the handler is attached).
class Late
  def initialize
    @record = { "events" => [] }
    Log.register("late", @record)
  end

  def note(line)
    Log.synchronize { @record["events"] << line }
  end

  def on_open(client)
    note("open")
    me = self
    define_singleton_method(:on_message) do |c, data|
      me.note("late message #{data.inspect}")
      c.write("late:#{data}")
    end
    define_singleton_method(:on_drained) { |_c| me.note("late drained") }
    client.write("added on_message and on_drained\n")
  end

  def on_close(_client)
    note("close")
  end
end

def params(env)
  Rack::Utils.parse_query(env["QUERY_STRING"].to_s)
end

factory_calls = 0
answers = [nil, false, true]

control = lambda do |env|
  query = params(env)
  case env["PATH_INFO"]
  when "/events"
    [200, { "content-type" => "text/plain" }, [Log.lines(query["id"]).join("\n")]]
  when "/conns"
    [200, { "content-type" => "application/json" }, [JSON.generate(Log.records(query["kind"]))]]
  when "/factory"
    [200, { "content-type" => "application/json" }, [JSON.generate("calls" => factory_calls)]]
  when "/upgrade-tcp"
    env["upgrade.tcp"] = Probe.new(query["id"])
    [101, { "x-upgraded" => "tcp" }, []]
  when "/upgrade-echo"
    env["upgrade.tcp"] = Echo.new("upgraded")
    [101, {}, []]
  when "/rack-upgrade"
    env["rack.upgrade"] = Probe.new(query["id"])
    [200, { "x-upgraded" => "rack", "content-type" => "text/plain" }, ["this body is never sent"]]
  else
    [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end

Iodine.threads = 2
Iodine.workers = 1
Iodine.listen(service: :http, port: http_port, address: "127.0.0.1", handler: control)
Iodine.listen(port: echo_port, address: "127.0.0.1") { Echo.new("echo") }
Iodine.listen(url: "tcp://127.0.0.1:#{echo_url_port}", handler: -> { Echo.new("echo") })
Iodine.listen(service: :tcp, port: nils_port, address: "127.0.0.1", handler: lambda {
  Log.synchronize do
    factory_calls += 1
    answers[(factory_calls - 1) % 3]
  end
})
Iodine.listen(url: "raw://127.0.0.1:#{probe_port}", handler: -> { Probe.new })
Iodine.listen(service: :raw, port: late_port, address: "127.0.0.1", handler: -> { Late.new })
Iodine.listen(address: File.join(unix_dir, "echo.sock"), port: 0, handler: -> { Echo.new("unix") })
Iodine.listen(url: "unix://:0#{File.join(unix_dir, 'url.sock')}", handler: -> { Echo.new("unix") })
Iodine.start
