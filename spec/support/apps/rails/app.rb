# frozen_string_literal: true

# A minimal single-file Rails 6.1 application, served by `exe/iodine` in
# spec/integration/rails_spec.rb (config.ru next to this file runs it). Production mode, no
# database, Rails' own exception pages (public/404.html, public/500.html), a quiet logger,
# and Action Cable on /cable (async adapter unless CABLE_ADAPTER says otherwise).
#
#   GET  /                  an inline ERB template rendered by ActionView (no layout)
#   GET  /page?name=N       the same, with N HTML-escaped into the page
#   GET  /api/items/:id     render json: of a hash
#   POST /api/items         a JSON body parsed by Rails, echoed back with 201
#   POST /announce          ActionCable.server.broadcast("chat", text: params[:text], from: "server")
#   POST /announce-raw      the request body, as it is, to Action Cable's pub/sub on "chat"
#                           (what another program publishing to the stream would send)
#   GET  /moved             redirect_to "/page?name=moved" (302)
#   POST /api/invalid       render json: with status 422
#   GET  /boom              raises: Rails' 500 page
#   GET  /live?count=N      ActionController::Live: N (5) chunks "chunk I\n", 0.3 s apart
#                           (with Last-Modified, so that Rack::ETag lets it stream)
#   GET  /live-buffered     the same without Last-Modified: Rack::ETag buffers it whole
#   GET  /live-state        JSON: Live actions started, chunks they wrote, how many ran their ensure
#   GET  /status/cable      JSON: Action Cable's open connections, whether iodine serves them
#                           natively, iodine's WebSocket and channel counts, this process's
#                           Ruby worker threads, the adapter's class, the pid
#   GET  /chat              a page whose script is Rails' own Action Cable JavaScript client:
#                           it connects as ?name=N, subscribes to ChatChannel, speaks "hi from N"
#                           and lists what it receives in <ul id="log">; its load event waits
#                           for an iframe of /hold?seconds=S (S = ?hold=, 2 unless given), so
#                           that headless Chromium's --dump-dom shows the list after S seconds
#   GET  /hold?seconds=S    answers "held" after S (at most 10) seconds
#   GET  /js/action_cable.js Rails' Action Cable client (from the actioncable gem)
#   /cable                  Action Cable: ApplicationCable::Connection (?name=N identifies it;
#                           no name, or "intruder", is rejected) and ChatChannel (stream_from
#                           "chat"; speak(data) broadcasts {"text", "from"} to "chat"; boom
#                           raises), and
#                           ShoutChannel (the same, its stream has a block: it transmits each
#                           broadcast with "shout" => true added)
#
# CABLE_ADAPTER chooses the cable adapter (async unless set, e.g. "iodine"). With
# CABLE_MASTER_TICKS set, a cluster's master broadcasts {"text" => "tick", "from" => "master"}
# to "ticks" (TickChannel streams it) every 0.2 s: a process that serves no WebSocket, so
# whoever receives it got it from another process.
ENV["RAILS_ENV"] ||= "production"

require "rails"
require "action_controller/railtie"
require "action_cable/engine"
require "json"

class RailsApp < Rails::Application
  config.root = __dir__
  config.eager_load = true
  config.secret_key_base = "0123456789abcdef" * 8
  config.logger = ActiveSupport::Logger.new($stderr)
  config.log_level = :error
  config.hosts.clear
  config.consider_all_requests_local = false
  config.action_dispatch.show_exceptions = true
  config.public_file_server.enabled = false

  config.action_cable.mount_path = "/cable"
  config.action_cable.disable_request_forgery_protection = true
  config.action_cable.cable = { "adapter" => ENV.fetch("CABLE_ADAPTER", "async") }
  config.action_cable.worker_pool_size = 4
end

module ApplicationCable
  class Connection < ActionCable::Connection::Base
    identified_by :nickname

    def connect
      name = request.params[:name].to_s
      reject_unauthorized_connection if name.empty? || name == "intruder"
      self.nickname = name
    end
  end

  class Channel < ActionCable::Channel::Base
  end
end

class ChatChannel < ApplicationCable::Channel
  def subscribed
    stream_from "chat"
  end

  def speak(data)
    ActionCable.server.broadcast("chat", { "text" => data["text"], "from" => nickname })
  end

  def boom(_data)
    raise ArgumentError, "deliberate boom from a channel action"
  end
end

class ShoutChannel < ChatChannel
  def subscribed
    stream_from("chat") { |message| transmit(ActiveSupport::JSON.decode(message).merge("shout" => true)) }
  end
end

class TickChannel < ApplicationCable::Channel
  def subscribed
    stream_from "ticks"
  end
end

class PagesController < ActionController::Base
  PAGE = <<~ERB
    <!DOCTYPE html>
    <html><head><title>rails_app</title></head>
    <body><h1>Hello from Rails <%= Rails.version %></h1><p id="name"><%= params[:name] %></p></body></html>
  ERB

  def index
    render inline: PAGE, layout: false
  end

  def moved
    redirect_to "/page?name=moved"
  end

  def boom
    raise ArgumentError, "deliberate boom from the Rails app"
  end

  CABLE_PAGE = <<~HTML
    <!DOCTYPE html>
    <html><head><title>cable</title><link rel="icon" href="data:,"><script src="/js/action_cable.js"></script></head>
    <body><ul id="log"></ul>
    <script>
      const query = new URLSearchParams(location.search);
      const nick = query.get("name");
      const hold = document.createElement("iframe");
      hold.src = "/hold?seconds=" + (query.get("hold") || "2");
      document.body.appendChild(hold);
      const log = (text) => { const li = document.createElement("li"); li.textContent = text; document.getElementById("log").appendChild(li); };
      const consumer = ActionCable.createConsumer("/cable?name=" + encodeURIComponent(nick));
      const chat = consumer.subscriptions.create({ channel: "ChatChannel" }, {
        connected() { log("connected"); chat.perform("speak", { text: "hi from " + nick }); },
        received(data) { log(data.from + ": " + data.text); }
      });
    </script></body></html>
  HTML
  ACTION_CABLE_JS = Gem.loaded_specs["actioncable"] &&
                    File.join(Gem.loaded_specs["actioncable"].full_gem_path, "app/assets/javascripts/action_cable.js")

  def cable_page
    render html: CABLE_PAGE.html_safe, layout: false
  end

  def hold
    sleep params.fetch(:seconds, 2).to_f.clamp(0, 10)
    render plain: "held"
  end

  def action_cable_js
    send_file ACTION_CABLE_JS, type: "text/javascript", disposition: "inline"
  end
end

LIVE_STATE = { "started" => 0, "written" => 0, "ensured" => 0 }
LIVE_LOCK = Mutex.new

class ApiController < ActionController::API
  def show
    render json: { "framework" => "rails", "version" => Rails.version, "id" => params[:id], "list" => [1, 2, 3] }
  end

  def create
    render json: { "echo" => request.request_parameters, "content_type" => request.media_type,
                   "length" => request.content_length }, status: :created
  end

  def invalid
    render json: { "errors" => { "name" => ["can't be blank"] } }, status: :unprocessable_entity
  end

  def live_state
    render json: LIVE_LOCK.synchronize { LIVE_STATE.dup }
  end

  def cable_state
    iodine = defined?(Iodine::Cable)
    stats = iodine && Iodine.stats
    # In a cluster the figures are the workers' sums; the thread count is this worker's own.
    own = stats && (stats[:workers]&.find { |w| w[:pid] == Process.pid } || stats)
    render json: { "connections" => ActionCable.server.connections.size,
                   "native" => iodine ? Iodine::Cable.installed? : false,
                   "iodine_websockets" => iodine ? Iodine.stats[:connections][:websocket] : nil,
                   "iodine_channels" => iodine ? Iodine.stats[:pubsub][:channels] : nil,
                   "iodine_threads" => own && own[:pool][:threads],
                   "adapter" => ActionCable.server.pubsub.class.name, "pid" => Process.pid }
  end

  def announce
    ActionCable.server.broadcast("chat", { "text" => params[:text], "from" => "server" })
    head :no_content
  end

  def announce_raw
    ActionCable.server.pubsub.broadcast("chat", request.raw_post)
    head :no_content
  end
end

class LiveController < ActionController::Base
  include ActionController::Live

  # Rack 2.2's Rack::ETag (in Rails' default stack) reads a body without ETag/Last-Modified
  # to its end to digest it, so Rails documents setting Last-Modified for a Live response
  # that must stream (rack/rack#1619); /live-buffered (buffered: 1) leaves it out.
  def index
    LIVE_LOCK.synchronize { LIVE_STATE["started"] += 1 }
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    response.headers["Last-Modified"] = Time.now.httpdate unless params[:buffered]
    params.fetch(:count, 5).to_i.times do |i|
      sleep 0.3 if i.positive?
      response.stream.write("chunk #{i}\n")
      LIVE_LOCK.synchronize { LIVE_STATE["written"] += 1 }
    end
  ensure
    response.stream.close
    LIVE_LOCK.synchronize { LIVE_STATE["ensured"] += 1 }
  end
end

Rails.application.initialize!

if ENV["CABLE_MASTER_TICKS"] && defined?(Iodine)
  Iodine.on_state(:enter_master) do # (after each fork: one timer is enough)
    $master_ticks ||= Iodine.run_every(200) { ActionCable.server.broadcast("ticks", { "text" => "tick", "from" => "master" }) }
  end
end

Rails.application.routes.draw do
  root "pages#index"
  get "/page" => "pages#index"
  get "/moved" => "pages#moved"
  get "/boom" => "pages#boom"
  get "/api/items/:id" => "api#show"
  post "/api/items" => "api#create"
  post "/api/invalid" => "api#invalid"
  post "/announce" => "api#announce"
  post "/announce-raw" => "api#announce_raw"
  get "/live" => "live#index"
  get "/live-buffered" => "live#index", defaults: { buffered: "1" }
  get "/live-state" => "api#live_state"
  get "/status/cable" => "api#cable_state"
  get "/chat" => "pages#cable_page"
  get "/hold" => "pages#hold"
  get "/js/action_cable.js" => "pages#action_cable_js"
end
