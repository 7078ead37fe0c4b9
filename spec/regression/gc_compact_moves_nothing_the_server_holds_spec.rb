# frozen_string_literal: true

require "spec_helper"
require_relative "../support/ws_frames"

# Ruby values the server keeps in Rust memory must be pinned (rb_gc_mark,
# rb_gc_register_mark_object): GC.compact moves whatever is only an Array or Hash element,
# and a stale copy in Rust crashes the process at its next use (Iodine::JSON's key cache did).
# The app compacts the whole heap between uses of every kind of held value.
RSpec.describe "GC.compact while serving" do
  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("gc_compact.ru")]) }
  after(:all) { @server&.stop }

  # An open WebSocket connection to the app.
  def connect
    socket = TCPSocket.new("127.0.0.1", @server.port)
    socket.write(WsFrames.upgrade_request("/ws", port: @server.port, key: SecureRandom.base64(16)))
    head, = read_for(socket, 5) { |bytes| bytes.include?("\r\n\r\n") }
    expect(head).to start_with("HTTP/1.1 101")
    [socket, head.split("\r\n\r\n", 2)[1].to_s.b]
  end

  # The next text frame's payload on `client` ([socket, buffered bytes]).
  def next_text(client)
    socket, buffer = client
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 5
    loop do
      if (frame, used = WsFrames.parse(buffer))
        buffer.replace(buffer.byteslice(used..))
        return frame.payload.force_encoding(Encoding::UTF_8) if frame.opcode == :text

        next
      end
      left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      raise "no frame within 5 s" if left <= 0 || !IO.select([socket], nil, nil, left)

      buffer << socket.read_nonblock(65_536)
    end
  end

  def say(client, text)
    client[0].write(WsFrames.encode(:text, text))
  end

  it "keeps WebSocket handlers, subscriptions, timers, JSON keys and templates working" do
    clients = Array.new(3) { connect }
    3.times do |round|
      clients.each_with_index do |client, i|
        say(client, "r#{round}c#{i}")
        expect(next_text(client)).to eq("echo:r#{round}c#{i}")
      end
      say(clients[0], "publish:#{round}")
      clients.each { |client| expect(next_text(client)).to eq("room:#{round}") }
      expect(http_get(@server.port, "/json").body).to eq('{"alpha_key":[1,2.5],"beta_key":"c"}')
      expect(http_get(@server.port, "/mustache").body).to eq("1-12")
      ticks = http_get(@server.port, "/ticks").body.to_i
      expect(http_get(@server.port, "/compact").body).to eq("compacted")
      sleep 0.1
      expect(http_get(@server.port, "/ticks").body.to_i).to be > ticks
    end
    expect_serving(@server)
  ensure
    clients&.each { |socket, _| socket.close }
  end
end
