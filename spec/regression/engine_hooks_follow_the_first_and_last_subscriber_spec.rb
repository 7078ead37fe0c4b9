# frozen_string_literal: true

require "spec_helper"
require_relative "../support/realtime"

# A Ruby engine's hooks used to be wrong for connection subscriptions: three connections
# subscribing to `chat` called `subscribe` three times and `unsubscribe` never;
# `Iodine.unsubscribe("chat")` while a connection still had it called `unsubscribe` early;
# `attach` and `reset` missed connection channels. Section 6.5: `subscribe` once per channel
# per process on its first subscriber of any kind, `unsubscribe` after its last one.
RSpec.describe "a Ruby engine's subscribe/unsubscribe hooks" do
  include RealtimeHelpers

  before(:all) { @server = ServerProcess.new(["-t", "2", app_path("engine_hooks.ru")]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  def log
    http_get(port, "/log").body.split("\n")
  end

  def hooks_for(channel)
    log.select { |l| l.split[1] == channel }
  end

  it "hears subscribe once for three connections on one channel, and unsubscribe after the last leaves" do
    clients = Array.new(3) { open_ws(port, "/ws/chat") }
    clients.each { |ws| expect(ws.read_message).to eq([:text, "subscribed"]) }
    expect(hooks_for("chat")).to eq(["subscribe chat"])
    clients[0..1].each(&:close_socket)
    sleep 0.3
    expect(hooks_for("chat")).to eq(["subscribe chat"])
    clients[2].close_socket
    expect(eventually { hooks_for("chat").size == 2 }).to be(true), log.inspect
    expect(hooks_for("chat")).to eq(["subscribe chat", "unsubscribe chat"])
  end

  it "counts Iodine.subscribe and connection subscriptions together" do
    ws = open_ws(port, "/ws/news")
    expect(ws.read_message).to eq([:text, "subscribed"])
    expect(http_get(port, "/sub?news").body).to eq("ok")
    expect(http_get(port, "/unsub?news").body).to eq("true")
    sleep 0.2
    expect(hooks_for("news")).to eq(["subscribe news"]), "the connection still has it"
    ws.text("unsubscribe")
    expect(ws.read_message).to eq([:text, "done unsubscribe"])
    expect(eventually { hooks_for("news").size == 2 }).to be(true), log.inspect
    expect(hooks_for("news")).to eq(["subscribe news", "unsubscribe news"])
    ws.close_socket
  end

  it "tells patterns as patterns, and reset tells every channel, connections' included" do
    ws = open_ws(port, "/ws/room.*?pattern=1")
    expect(ws.read_message).to eq([:text, "subscribed"])
    expect(hooks_for("room.*")).to eq(["subscribe room.* pattern"])
    expect(http_get(port, "/reset").body.split("\n")).to include("subscribe room.* pattern")
    ws.close_socket
  end
end
