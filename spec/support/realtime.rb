# frozen_string_literal: true

require "json"
require "open3"
require "uri"
require_relative "ws_frames"

# Shared by the WebSocket, SSE and connection pub/sub specs: the Python WebSocket client
# (spec/support/ws_client.py), raw WebSocket clients (spec/support/ws_frames.rb) and the
# event logs the realtime apps keep (spec/support/apps/realtime_log.rb).
module RealtimeHelpers
  WS_CLIENT = File.join(__dir__, "ws_client.py")

  # The server still answers plain HTTP and, for the realtime apps (which answer /workers),
  # has every Ruby worker thread of its pool alive (a dead one is replaced within moments).
  def expect_serving(server, body = "ok")
    super
    alive, pool = nil
    healed = eventually do
      alive, pool = http_get(server.port, "/workers").body.split("/").map(&:to_i)
      pool.to_i.positive? && alive == pool
    end
    expect(healed).to be(true), "worker threads alive/pool: #{alive}/#{pool}"
  end

  # The first Python 3 that has the `websockets` package (Debian: python3-websockets).
  def self.python
    @python ||= [ENV.fetch("WS_PYTHON", nil), "python3", "/usr/bin/python3"].compact.find do |python|
      system(python, "-c", "import websockets", out: File::NULL, err: File::NULL)
    end
    @python || raise("no python3 with the websockets package (apt-get install python3-websockets)")
  end

  def ws_url(port, path)
    "ws://127.0.0.1:#{port}#{path}"
  end

  def http_url(port, path)
    "http://127.0.0.1:#{port}#{path}"
  end

  # Runs ws_client.py with the request (its keywords, see the script's docstring; `timeout:`
  # among them is the script's own) and returns its JSON answer. The script bounds itself;
  # `kill_after` seconds is the safety net.
  def ws_client(kill_after: 120, **request)
    python_json(WS_CLIENT, request, kill_after: kill_after)
  end

  # Runs the Python `script` with `request` as JSON on its stdin and returns the JSON of its
  # last line; killed (and an error) after `kill_after` seconds, an error if it fails.
  def python_json(script, request, kill_after:)
    name = File.basename(script)
    Open3.popen3(RealtimeHelpers.python, script) do |stdin, stdout, stderr, wait|
      out = Thread.new { stdout.read }
      err = Thread.new { stderr.read }
      stdin.write(JSON.generate(request))
      stdin.close
      unless wait.join(kill_after)
        Process.kill("KILL", wait.pid)
        wait.join
        raise "#{name} still running after #{kill_after}s: #{err.value}"
      end
      raise "#{name} failed (#{wait.value}): #{err.value}" unless wait.value.success?

      err.join # its reader ends before popen3 closes the pipe under it
      JSON.parse(out.value.lines.last)
    end
  end

  # A raw WebSocket client (WsFrames::Client) on `path`; with a block, closed afterwards.
  def open_ws(port, path, **options, &block)
    return WsFrames::Client.open(port, path, **options, &block) if block

    WsFrames::Client.new(port, path, **options)
  end

  # What the app logged for connection `id` (GET /events?id=ID), one String per event.
  def events(port, id)
    http_get(port, "/events?id=#{URI.encode_www_form_component(id)}").body.split("\n")
  end

  # Polls the log of `id` until the block is true for it or `seconds` pass; returns the log.
  def wait_for_events(port, id, seconds: 5)
    lines = nil
    eventually(seconds) { yield(lines = events(port, id)) }
    lines
  end

  # Polls the block until it answers something truthy or `seconds` pass; returns that answer.
  def eventually(seconds = 5)
    deadline = WsFrames.now + seconds
    loop do
      value = yield
      return value if value || WsFrames.now > deadline

      sleep 0.05
    end
  end

  # Expects the server's Close frame with `code`, answers it, and expects the socket closed.
  def expect_close(ws, code)
    frame = ws.read_close(5)
    expect(frame).not_to be_nil, "no Close frame within 5 s (socket closed: #{ws.eof?})"
    expect(frame.close_code).to eq(code)
    ws.close(code)
    expect(ws.eof_within?(5)).to be(true), "the server kept the TCP connection after the Close"
  end

  # Expects the server to drop the connection within 5 s (answering its Close, if it sends one).
  def expect_dropped(ws)
    frame = ws.read_close(5)
    ws.close(frame.close_code) if frame&.close_code
    expect(ws.eof_within?(5)).to be(true), "the connection is still open"
  end

  # A fresh id for one example's connections, so examples sharing a server never mix logs.
  def unique_id(prefix)
    "#{prefix}-#{SecureRandom.hex(4)}"
  end
end
