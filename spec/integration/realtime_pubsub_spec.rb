# frozen_string_literal: true

require "spec_helper"
require_relative "../support/realtime"

# Pub/sub bound to WebSocket connections (api.md §6.1–6.3, §3.1): subscriptions without a
# block (straight to the client, text or binary), with a block (run with the connection's
# callbacks, never beside them), patterns, unsubscribe, cancellation on close,
# Connection#publish, the Hash form of Iodine.publish, and fan-out. A client drives
# spec/support/apps/ws_pubsub.ru with command messages; HTTP GET /publish publishes.
# (SSE subscriptions are in sse_spec.rb.)
RSpec.describe "connection pub/sub" do
  include RealtimeHelpers

  before(:all) { @server = ServerProcess.new(["-t", "4", app_path("ws_pubsub.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  # Sends a command message and returns the app's answer to it.
  def command(ws, line)
    ws.text(line)
    kind, answer = ws.read_message(5)
    expect(kind).to eq(:text), "no answer to #{line.inspect} (got #{kind.inspect} #{answer.inspect})"
    answer
  end

  # Iodine.publish through the app; returns its answer ("[true]").
  def publish(channel, message, **options)
    http_get(port, "/publish?#{URI.encode_www_form(ch: channel, msg: message, **options)}").body
  end

  it "subscribe without a block sends each message to the client as a text frame" do
    channel = unique_id("news")
    open_ws(port, "/") do |ws|
      expect(command(ws, "sub #{channel}")).to eq(%(sub #{channel} -> "#{channel}"))
      expect(publish(channel, "héllo")).to eq("[true]")
      expect(ws.read_message).to eq([:text, "héllo"])
      publish(channel, "second")
      expect(ws.read_message).to eq([:text, "second"])
    end
  end

  it "subscribe(as: :binary) sends binary frames" do
    channel = unique_id("bin")
    open_ws(port, "/") do |ws|
      expect(command(ws, "subbin #{channel}")).to eq(%(subbin #{channel} -> "#{channel}"))
      publish(channel, "\x00\xFFbytes".b)
      expect(ws.read_message).to eq([:binary, "\x00\xFFbytes".b])
    end
  end

  it "subscribe with a block runs it with binary Strings, never beside the connection's callbacks, in order" do
    channel = unique_id("block")
    overlaps = JSON.parse(http_get(port, "/stats").body)["overlaps"]
    open_ws(port, "/") do |ws|
      expect(command(ws, "subblock #{channel}")).to eq(%(subblock #{channel} -> "#{channel}"))
      publisher = Thread.new { publish(channel, "m", count: 100) }
      100.times { ws.text("noop x") }
      publisher.join
      got = ws.messages(200, 20)
      expect(got.grep(/\Ablock /)).to eq(Array.new(100) { |i| "block #{channel} m#{i} ASCII-8BIT ASCII-8BIT" })
      expect(got.count("noop x -> nil")).to eq(100)
    end
    expect(JSON.parse(http_get(port, "/stats").body)["overlaps"]).to eq(overlaps)
  end

  it "match: :redis subscribes to a glob pattern" do
    base = unique_id("pattern")
    open_ws(port, "/") do |ws|
      command(ws, "subpat #{base}.*")
      command(ws, "subpat #{base}-[ab]?")
      command(ws, "sub #{base}-end")
      publish(base, "no: the dot is missing")
      publish("#{base}.sport", "goal")
      publish("#{base}X.sport", "no: another prefix")
      publish("#{base}-cz", "no: c is not in [ab]")
      publish("#{base}-bz", "bracket")
      publish("#{base}-end", "end")
      expect(ws.messages(3)).to eq(%w[goal bracket end])
    end
  end

  it "unsubscribe takes a String or a Symbol and answers true when there was such a subscription, else false" do
    base = unique_id("unsub")
    open_ws(port, "/") do |ws|
      command(ws, "sub #{base}-a")
      command(ws, "sub #{base}-b")
      command(ws, "sub #{base}-end")
      expect(command(ws, "unsub #{base}-a")).to eq("unsub #{base}-a -> true")
      expect(command(ws, "unsub #{base}-a")).to eq("unsub #{base}-a -> false")
      expect(command(ws, "unsubsym #{base}-b")).to eq("unsubsym #{base}-b -> true")
      expect(command(ws, "unsubsym #{base}-b")).to eq("unsubsym #{base}-b -> false")
      expect(command(ws, "unsub #{base}-never")).to eq("unsub #{base}-never -> false")
      publish("#{base}-a", "gone")
      publish("#{base}-b", "gone")
      publish("#{base}-end", "end")
      expect(ws.messages(1)).to eq(["end"])
    end
  end

  it "subscribe takes a Symbol and answers the channel as given" do
    channel = unique_id("symbol")
    open_ws(port, "/") do |ws|
      expect(command(ws, "subsym #{channel}")).to eq("subsym #{channel} -> #{channel.to_sym.inspect}")
      publish(channel, "via a Symbol")
      expect(ws.read_message).to eq([:text, "via a Symbol"])
    end
  end

  it "cancels a connection's subscriptions when it closes: later messages reach only the others" do
    channel = unique_id("gone")
    leaving = unique_id("leaving")
    staying = open_ws(port, "/")
    command(staying, "sub #{channel}")
    open_ws(port, "/?id=#{leaving}") do |ws|
      command(ws, "subblock #{channel}")
      command(ws, "sub #{channel}-direct")
      ws.close(1000)
      ws.read_close
    end
    expect(wait_for_events(port, leaving) { |l| l.include?("close") }).to eq(["close"])
    expect(publish(channel, "after")).to eq("[true]")
    expect(publish("#{channel}-direct", "after")).to eq("[true]")
    expect(staying.read_message).to eq([:text, "after"])
    sleep 0.3
    expect(events(port, leaving)).to eq(["close"])
    expect_serving(@server)
  ensure
    staying&.close_socket
  end

  it "client.publish reaches every subscriber, the publishing connection included" do
    channel = unique_id("self")
    other = open_ws(port, "/")
    command(other, "sub #{channel}")
    open_ws(port, "/") do |ws|
      command(ws, "sub #{channel}")
      ws.text("pub #{channel} hello all")
      expect(ws.messages(2)).to contain_exactly("pub #{channel} -> true", "hello all")
    end
    expect(other.read_message).to eq([:text, "hello all"])
  ensure
    other&.close_socket
  end

  it "Iodine.publish(to:, message:) delivers like Iodine.publish(channel, message)" do
    channel = unique_id("hash")
    open_ws(port, "/") do |ws|
      command(ws, "sub #{channel}")
      expect(publish(channel, "positional")).to eq("[true]")
      expect(publish(channel, "hashed", form: "hash")).to eq("[true]")
      expect(ws.messages(2)).to eq(%w[positional hashed])
    end
  end

  it "fans out: 100 subscribers each get all 50 messages, in order" do
    channel = unique_id("fan")
    result = ws_client(mode: "fleet", url: ws_url(port, "/sub?ch=#{channel}"), clients: 100, hello: "ready",
                       trigger: http_url(port, "/publish?ch=#{channel}&msg=msg-&count=50"), count: 50,
                       expect: "msg-{i}", timeout: 60)
    expect(result["failures"]).to eq([])
    expect(result["ok"]).to eq(100)
    expect(result["trigger"]).to eq("[true]")
  end
end
